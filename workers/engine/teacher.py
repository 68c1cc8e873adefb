"""Teacher preparation: safe loading, deciding whether its head is trained, fine-tuning.

A base checkpoint with a freshly initialised head is not a teacher (ENGINE.md): its
logits are noise, and distilling noise teaches nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from app.jobspec import families
from workers.engine.data import Batch, EncodedSplit, model_inputs
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.shares import WHOLE, Share
from workers.engine.spec import EngineInputError, TrainingSpec
from workers.engine.tasks import SEQUENCE_CLASSIFICATION, Task, get_task
from workers.engine.train import LoopHooks, TrainConfig, train_loop

# The last projection of a sequence-classification head in the supported families
# (each task lists its own: ``Task.head_weight_keys``).
HEAD_WEIGHT_KEYS = get_task(SEQUENCE_CLASSIFICATION).head_weight_keys


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


def head_output_size(
    teacher_dir: Path, head_weight_keys: tuple[str, ...] = HEAD_WEIGHT_KEYS
) -> int | None:
    """Rows of the checkpoint's classifier projection, read from the safetensors header
    alone (no tensor is loaded); None when the checkpoint has no head."""
    for path in safetensors_files(teacher_dir):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                if key in head_weight_keys:
                    return int(handle.get_slice(key).get_shape()[0])
    return None


def saved_architectures(teacher_dir: Path) -> list[str]:
    """config.json's ``architectures``: the classes the checkpoint was saved from."""
    try:
        config = json.loads((teacher_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = config.get("architectures") if isinstance(config, dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def has_trained_head(teacher_dir: Path, num_labels: int, task: Task | None = None) -> bool:
    """A head of the right size, saved by a model of this task: BERT's 9-way sentence
    head and its 9-tag token head are both ``classifier.weight`` [9, hidden], but only
    one of them tags words. A config without ``architectures`` is taken at its
    weights' word."""
    task = task or get_task(SEQUENCE_CLASSIFICATION)
    if head_output_size(teacher_dir, task.head_weight_keys) != num_labels:
        return False
    saved = saved_architectures(teacher_dir)
    return not saved or any(name.endswith(task.architecture_suffix) for name in saved)


def _bytelevel_without_prefix_space(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    return isinstance(pre, pre_tokenizers.ByteLevel) and not pre.add_prefix_space


def load_tokenizer(teacher_dir: Path, task: Task | None = None) -> PreTrainedTokenizerBase:
    # Byte-level BPE (RoBERTa) marks a word start by its leading space; words handed
    # over one by one (token classification) have none unless the tokenizer adds it,
    # and transformers 5 no longer refuses such input: it silently tokenises worse.
    words = task is not None and task.word_inputs
    try:
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir, trust_remote_code=False)
        if words and _bytelevel_without_prefix_space(tokenizer):
            tokenizer = AutoTokenizer.from_pretrained(
                teacher_dir, trust_remote_code=False, add_prefix_space=True
            )
    except (OSError, ValueError) as exc:
        raise EngineInputError(
            "teacher_missing_tokenizer", f"could not load the teacher's tokenizer: {exc}"
        ) from exc
    if tokenizer.pad_token_id is None:
        raise EngineInputError(
            "tokenizer_without_padding", "the teacher's tokenizer defines no padding token"
        )
    return tokenizer


def load_teacher(
    teacher_dir: Path, label_names: tuple[str, ...], task: Task | None = None
) -> PreTrainedModel:
    """The teacher with the task's head (sequence classification when no task is given)."""
    task = task or get_task(SEQUENCE_CLASSIFICATION)
    safetensors_files(teacher_dir)  # refuse non-safetensors folders before loading
    model, info = task.auto_class.from_pretrained(
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
    check_loading_info(info, families.for_config(model.config).task_head)
    return model


def _replaceable(key: str, head: tuple[str, ...]) -> bool:
    """Whether ``key`` belongs to the task head (or a pooler) a new head initialises."""
    parts = key.split(".")
    return any(name in parts[:-1] for name in head)


def check_loading_info(info: dict, head: tuple[str, ...] = ("classifier", "score")) -> None:
    """transformers 5 re-initialises weights whose shapes disagree with config.json and
    only logs it; a teacher with random layers is useless, so refuse it instead. The
    family's task head (``head``: module names, its pooler included) may be new."""
    mismatched = sorted(
        (k, tuple(a), tuple(b))
        for k, a, b in info.get("mismatched_keys", ())
        if not _replaceable(k, head)
    )
    if mismatched:
        shown = "; ".join(f"{k}: weights {a} vs config {b}" for k, a, b in mismatched[:3])
        raise EngineInputError(
            "teacher_config_mismatch",
            f"The teacher's config.json does not describe its weights ({len(mismatched)} "
            f"tensors differ in size, e.g. {shown}); upload the config.json saved with "
            "these weights.",
        )
    missing = sorted(k for k in info.get("missing_keys", ()) if not _replaceable(k, head))
    if missing:
        raise EngineInputError(
            "teacher_weights_missing",
            f"The teacher's weights lack {len(missing)} tensors its config.json needs "
            f"(e.g. {', '.join(missing[:3])}); upload the complete save_pretrained folder.",
        )


def _finetune_loss(
    teacher: PreTrainedModel,
    runtime: Runtime,
    ce: Callable[[LossInputs], torch.Tensor],
    batch: Batch,
    share: Share = WHOLE,
) -> torch.Tensor:
    with runtime.autocast():
        logits = teacher(**model_inputs(batch)).logits
    loss = ce(LossInputs(logits, batch["labels"], batch["attention_mask"]))
    return loss if share == WHOLE else loss * share.labelled


def finetune_teacher(
    teacher: PreTrainedModel,
    train: EncodedSplit,
    *,
    training: TrainingSpec,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
    hooks: LoopHooks | None = None,
) -> list[dict[str, float]]:
    # A partial, not a closure: a data-parallel loop pickles it (train.py).
    step_loss = functools.partial(_finetune_loss, teacher, runtime, get_loss("ce"))
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
        hooks=hooks,
    )
