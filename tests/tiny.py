"""Tiny models and data sets for tests: built locally, offline, in well under a second.

Shared by the engine, API and end-to-end tests; keep the signatures stable.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

POSITIVE_WORDS = ("good", "great", "fine", "excellent", "lovely", "nice")
NEGATIVE_WORDS = ("bad", "awful", "poor", "terrible", "boring", "dull")
FILLER_WORDS = (
    "the", "a", "movie", "film", "was", "is", "plot", "acting", "story", "really",
    "very", "it", "this", "and", "with", "of", "ending", "cast", "music", "quite",
)  # fmt: skip
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB = SPECIAL_TOKENS + tuple(sorted({*POSITIVE_WORDS, *NEGATIVE_WORDS, *FILLER_WORDS, "."}))


def make_tiny_bert(
    out_dir: Path,
    *,
    num_labels: int | None = None,
    num_layers: int = 4,
    hidden: int = 32,
    seed: int = 0,
) -> Path:
    """A randomly initialised BERT plus a WordPiece tokenizer over the tiny vocabulary.

    ``num_labels=None`` saves a headless ``BertModel`` (like a base checkpoint such as
    MiniLM); an int saves a ``BertForSequenceClassification`` with that many labels.
    """
    # Imported here so that importing this module (e.g. from API tests) stays torch-free.
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # from_pretrained on the folder reads vocab.txt (the constructor's vocab_file
    # argument is ignored in transformers 5) and save_pretrained adds tokenizer.json.
    tokenizer = BertTokenizer.from_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    model.save_pretrained(out_dir)
    return out_dir


def tiny_sentence(rng: random.Random, positive: bool) -> str:
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(3, 8))]
    cues = POSITIVE_WORDS if positive else NEGATIVE_WORDS
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randint(0, len(words)), rng.choice(cues))
    return " ".join(words) + " ."


def make_tiny_dataset(
    path: Path,
    *,
    n: int = 200,
    seed: int = 0,
    label_names: tuple[str, str] = ("negative", "positive"),
) -> Path:
    """JSONL rows ``{"text": ..., "label": <label name>}``; the second label's sentences
    carry positive cue words, the first's negative ones. Deterministic for ``seed``."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            positive = rng.random() < 0.5
            row = {"text": tiny_sentence(rng, positive), "label": label_names[int(positive)]}
            handle.write(json.dumps(row) + "\n")
    return path


def write_engine_jsonl(
    src: Path,
    train: Path,
    eval: Path,
    label_names: Sequence[str],
    *,
    eval_fraction: float = 0.25,
) -> tuple[int, int]:
    """Turn a string-labelled JSONL file into the engine's integer-labelled train/eval
    files (the last ``eval_fraction`` of rows is the eval split). Returns the counts."""
    index = {name: i for i, name in enumerate(label_names)}
    rows = [json.loads(line) for line in Path(src).read_text(encoding="utf-8").splitlines()]
    rows = [{"text": r["text"], "label": index[r["label"]]} for r in rows if r]
    n_eval = max(1, round(len(rows) * eval_fraction))
    splits = ((Path(train), rows[:-n_eval]), (Path(eval), rows[-n_eval:]))
    for path, part in splits:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return len(rows) - n_eval, n_eval
