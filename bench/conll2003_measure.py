"""The final pass of bench/conll2003.py: every row's saved model loaded from disk with
plain ``AutoModelForTokenClassification``, in each runtime asked for (PyTorch, ONNX
Runtime fp32 and int8: bench/runtimes.py), scored on eng.testb and timed together, so
that no row is measured under different conditions.

Scoring is the benchmark's own (not the engine's), so that a change in the engine cannot
move the yardstick: each sentence's words are tokenised whole (no truncation: the
longest test sentence fits the model's 512 positions), the tag predicted on each word's
first piece is that word's tag, and seqeval scores the IOB2 sequences by entity in its
default (conlleval-compatible) mode, overall (micro) and per type.

Latency is the engine's interleaved timing of every model in every runtime at once:
round-robin (a, b, c, a, b, c, ...), median of repetitions, fixed thread count, real
test sentences padded to a fixed sequence length; repeated ``rounds`` times and the
median of the rounds' medians kept, with each round's figure in the JSON.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForTokenClassification, PreTrainedModel

from bench import runtimes
from bench.conll2003_data import TYPES, Sentence
from workers.engine import onnx_export as ox
from workers.engine.tasks import TOKEN_CLASSIFICATION, get_task
from workers.engine.teacher import load_tokenizer


def load_saved(folder: Path) -> PreTrainedModel:
    """The model as plain transformers loads it; a load that does not match the saved
    weights (transformers 5 re-initialises such tensors and only logs it) is an error:
    the row fails instead of scoring random weights."""
    model, info = AutoModelForTokenClassification.from_pretrained(
        folder,
        use_safetensors=True,
        trust_remote_code=False,
        dtype=torch.float32,
        output_loading_info=True,
    )
    problems = {
        key: [k for k in values if not str(k).endswith("position_ids")]
        for key, values in info.items()
        if key != "error_msgs"
    }
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise RuntimeError(f"{folder}: plain AutoModelForTokenClassification load: {problems}")
    return model.eval()


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    from seqeval.metrics import accuracy_score, classification_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero_division=0 says what 0/0 becomes
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
        token_accuracy = float(accuracy_score(gold, predicted))
    overall = report["micro avg"]
    per_type = {
        t: {
            "precision": float(report[t]["precision"]) if t in report else 0.0,
            "recall": float(report[t]["recall"]) if t in report else 0.0,
            "f1": float(report[t]["f1-score"]) if t in report else 0.0,
            "support": int(report[t]["support"]) if t in report else 0,
        }
        for t in TYPES
    }
    return {
        "f1": float(overall["f1-score"]),
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "token_accuracy": token_accuracy,
        "per_type": per_type,
    }


# A batch of tokenizer outputs -> [batch, tokens, tags] logits, in whichever runtime.
Logits = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def logits_of(thing: Any, runtime: str) -> Logits:
    """The logits of a PyTorch model or of an ONNX Runtime session (``runtime``)."""
    if runtime == "pytorch":
        return lambda inputs: thing(**inputs).logits
    return lambda inputs: ox.ort_logits(thing, inputs)


def predict_tags(
    logits: Logits,
    tokenizer,
    sentences: Sequence[Sentence],
    label_names: Sequence[str],
    *,
    batch_size: int,
    limit: int,
) -> tuple[list[list[str]], int]:
    """Predicted IOB2 tags per sentence (first piece of each word), and how many words
    had no piece within the model's ``limit`` positions (predicted 'O')."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].tokens))
    predicted: list[list[str]] = [[] for _ in sentences]
    unseen = 0
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        words = [list(sentences[i].tokens) for i in indices]
        encoded = tokenizer(
            words,
            is_split_into_words=True,
            truncation=True,
            max_length=limit,
            padding=True,
            return_tensors="pt",
        )
        inputs = {k: v for k, v in encoded.items() if k != "offset_mapping"}
        with torch.inference_mode():
            best = logits(inputs).argmax(dim=-1)
        for row, index in enumerate(indices):
            tags = ["O"] * len(sentences[index].tokens)
            seen = set()
            for position, word in enumerate(encoded.word_ids(row)):
                if word is None or word in seen:
                    continue
                seen.add(word)
                tags[word] = label_names[int(best[row, position])]
            unseen += len(tags) - len(seen)
            predicted[index] = tags
    return predicted, unseen


def score(
    logits: Logits,
    tokenizer,
    sentences: Sequence[Sentence],
    label_names: Sequence[str],
    *,
    batch_size: int,
    limit: int,
) -> dict[str, Any]:
    predicted, unseen = predict_tags(
        logits, tokenizer, sentences, label_names, batch_size=batch_size, limit=limit
    )
    gold = [list(s.tags) for s in sentences]
    return {**entity_scores(gold, predicted), "words_without_a_piece": unseen}


def size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def shape(model: PreTrainedModel) -> dict[str, int]:
    embeddings = sum(p.numel() for p in model.base_model.embeddings.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {
        "num_parameters": total,
        "non_embedding_parameters": total - embeddings,
        "num_layers": int(model.config.num_hidden_layers),
        "intermediate_size": int(model.config.intermediate_size),
    }


def measure_all(
    folders: dict[str, Path],
    test: Sequence[Sentence],
    label_names: Sequence[str],
    *,
    batch_size: int,
    final: runtimes.FinalPass,
) -> dict[str, Any]:
    """Entity scores, size and CPU latency of every saved model in every runtime, keyed
    like ``folders`` then by runtime (bench/runtimes.py). A model that cannot be loaded,
    exported or scored gets ``{"error": ...}`` there and is not timed there."""
    task = get_task(TOKEN_CLASSIFICATION)
    teacher = next(iter(folders.values()))
    tokenizer = load_tokenizer(teacher, task)
    # Every student keeps its teacher's position table (and the int8 peers theirs).
    limit = int(AutoConfig.from_pretrained(teacher).max_position_embeddings)

    def load(folder: Path) -> tuple[PreTrainedModel, dict[str, Any], dict[str, Any]]:
        model = load_saved(folder)
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if tuple(names) != tuple(label_names):
            raise RuntimeError(f"head labels {names} are not {list(label_names)}")
        return model, shape(model), {"size_bytes": size_bytes(folder)}

    def scored(thing: Any, runtime: str) -> dict[str, Any]:
        return score(
            logits_of(thing, runtime),
            tokenizer,
            test,
            label_names,
            batch_size=batch_size,
            limit=limit,
        )

    return runtimes.measure_all(
        folders,
        load=load,
        score=scored,
        main="f1",
        tokenizer=tokenizer,
        texts=[" ".join(s.tokens) for s in test],
        final=final,
    )
