"""Teacher preparation: safe loading, deciding whether its head is trained, fine-tuning.

A base checkpoint with a freshly initialised head is not a teacher (ENGINE.md): its
logits are noise, and distilling noise teaches nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from workers.engine.data import Batch, EncodedSplit, model_inputs
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import EngineInputError, TrainingSpec
from workers.engine.train import TrainConfig, train_loop

# The last projection of a sequence-classification head in the supported families:
# BERT's ``classifier``, RoBERTa/ELECTRA's ``classifier.out_proj``, and ``score`` for
# decoder-style heads.
HEAD_WEIGHT_KEYS = ("classifier.weight", "classifier.out_proj.weight", "score.weight")


def safetensors_files(teacher_dir: Path) -> list[Path]:
    single = teacher_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = teacher_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return sorted({teacher_dir / name for name in weight_map.values()})
    raise EngineInputError(
        "teacher_not_safetensors",
        "the teacher folder has no model.safetensors (or sharded index); "
        "other weight formats are refused because they can run code when loaded",
    )


def head_output_size(teacher_dir: Path) -> int | None:
    """Rows of the checkpoint's classifier projection, read from the safetensors header
    alone (no tensor is loaded); None when the checkpoint has no head."""
    for path in safetensors_files(teacher_dir):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                if key in HEAD_WEIGHT_KEYS:
                    return int(handle.get_slice(key).get_shape()[0])
    return None


def has_trained_head(teacher_dir: Path, num_labels: int) -> bool:
    return head_output_size(teacher_dir) == num_labels


def load_tokenizer(teacher_dir: Path) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise EngineInputError(
            "teacher_missing_tokenizer", f"could not load the teacher's tokenizer: {exc}"
        ) from exc
    if tokenizer.pad_token_id is None:
        raise EngineInputError(
            "tokenizer_without_padding", "the teacher's tokenizer defines no padding token"
        )
    return tokenizer


def load_teacher(teacher_dir: Path, label_names: tuple[str, ...]) -> PreTrainedModel:
    safetensors_files(teacher_dir)  # refuse non-safetensors folders before loading
    model, info = AutoModelForSequenceClassification.from_pretrained(
        teacher_dir,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        use_safetensors=True,
        trust_remote_code=False,
        # A head trained for another label count is replaced (and then fine-tuned)
        # instead of failing the load; any other mismatch is refused below.
        ignore_mismatched_sizes=True,
        output_loading_info=True,
        # Train in fp32 whatever the checkpoint's dtype; autocast does mixed precision.
        dtype=torch.float32,
    )
    check_loading_info(info)
    return model


# Parts that may be freshly initialised: the task head (replaced for new labels) and the
# pooler (some checkpoints are saved without it; it is trained with the head).
REPLACEABLE = ("classifier.", "score.", "pooler.")


def _replaceable(key: str) -> bool:
    return any(part in key for part in (f".{p}" for p in REPLACEABLE)) or key.startswith(
        REPLACEABLE
    )


def check_loading_info(info: dict) -> None:
    """transformers 5 re-initialises weights whose shapes disagree with config.json and
    only logs it; a teacher with random layers is useless, so refuse it instead."""
    mismatched = sorted(
        (k, tuple(a), tuple(b))
        for k, a, b in info.get("mismatched_keys", ())
        if not _replaceable(k)
    )
    if mismatched:
        shown = "; ".join(f"{k}: weights {a} vs config {b}" for k, a, b in mismatched[:3])
        raise EngineInputError(
            "teacher_config_mismatch",
            f"The teacher's config.json does not describe its weights ({len(mismatched)} "
            f"tensors differ in size, e.g. {shown}); upload the config.json saved with "
            "these weights.",
        )
    missing = sorted(k for k in info.get("missing_keys", ()) if not _replaceable(k))
    if missing:
        raise EngineInputError(
            "teacher_weights_missing",
            f"The teacher's weights lack {len(missing)} tensors its config.json needs "
            f"(e.g. {', '.join(missing[:3])}); upload the complete save_pretrained folder.",
        )


def finetune_teacher(
    teacher: PreTrainedModel,
    train: EncodedSplit,
    *,
    training: TrainingSpec,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
) -> list[dict[str, float]]:
    ce = get_loss("ce")

    def step_loss(batch: Batch) -> torch.Tensor:
        with runtime.autocast():
            logits = teacher(**model_inputs(batch)).logits
        return ce(LossInputs(logits, batch["labels"], batch["attention_mask"]))

    config = TrainConfig(
        name="teacher_finetune",
        epochs=training.teacher_epochs,
        batch_size=training.batch_size,
        learning_rate=training.teacher_learning_rate,
        seed=training.seed,
        pad_token_id=pad_token_id,
    )
    return train_loop(
        config=config,
        modules=[teacher],
        data=train,
        step_loss=step_loss,
        runtime=runtime,
        progress=progress,
    )
