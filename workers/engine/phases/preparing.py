"""The ``preparing`` phase: the spec's data, tokenizer, device and teacher."""

from __future__ import annotations

from typing import Any

from app.jobspec import families
from workers.engine.checkpoint import Checkpointer
from workers.engine.phases.run import Run, timed
from workers.engine.progress import Progress
from workers.engine.run_state import RunState
from workers.engine.runtime import Runtime, resolve_device, resolve_devices, seed_everything
from workers.engine.spec import CompressionSpec, EngineInputError
from workers.engine.tasks import get_task
from workers.engine.teacher import has_trained_head, load_teacher, load_tokenizer
from workers.engine.validate import read_teacher_config


def prepare(
    spec: CompressionSpec,
    *,
    progress: Progress,
    checkpointer: Checkpointer,
    resumed: RunState | None,
) -> Run:
    """Read and encode both splits, load the teacher (with the weights a checkpoint
    carries) and decide whether it needs fine-tuning first."""
    progress.start_phase("preparing")
    timings: dict[str, float] = {}
    with timed(timings, "preparing"):
        # What differs between sequence and token classification (rows, head, scores).
        task = get_task(spec.task)
        teacher_config = read_teacher_config(spec.teacher_dir)
        device = resolve_device(spec.device)
        accumulation = spec.training.gradient_accumulation_steps
        devices = resolve_devices(
            spec.training.devices,
            device,
            batch_size=spec.training.batch_size,
            accumulation=accumulation,
        )
        if devices.warning is not None:
            progress.log(
                devices.warning,
                level="warning",
                data={"stage": "preparing", "devices_used": devices.used},
            )
        runtime = Runtime(device, devices=devices.used, accumulation=accumulation)
        seed_everything(spec.training.seed)
        num_labels = len(spec.label_names)
        task.check_label_names(spec.label_names)
        train_examples = task.read(spec.train_file, num_labels=num_labels, split="train")
        eval_examples = task.read(spec.eval_file, num_labels=num_labels, split="eval")
        needs_finetune = not has_trained_head(spec.teacher_dir, num_labels, task)
        if needs_finetune and spec.training.teacher_epochs == 0:
            raise EngineInputError(
                "teacher_needs_finetune",
                f"the teacher has no trained {num_labels}-label {task.name} head, so it "
                "must be fine-tuned first: set training.teacher_epochs to at least 1",
            )
        progress.within(0.2)
        tokenizer = load_tokenizer(spec.teacher_dir, task)
        max_len = usable_seq_len(teacher_config, spec.training.max_seq_length)
        train = task.encode(tokenizer, train_examples, max_length=max_len, split="train")
        evaluation = task.encode(tokenizer, eval_examples, max_length=max_len, split="eval")
        progress.within(0.5)
        teacher = load_teacher(spec.teacher_dir, spec.label_names, task).to(runtime.device)
        if resumed is not None and resumed.teacher is not None:
            teacher.load_state_dict(resumed.teacher)
        progress.log(
            f"loaded {teacher_config['model_type']} teacher; {len(train)} train and "
            f"{len(evaluation)} eval examples on {runtime.device.type}; training on "
            f"{runtime.devices} device(s)",
            data={
                "model_type": teacher_config["model_type"],
                "train_examples": len(train),
                "eval_examples": len(evaluation),
                "device": runtime.device.type,
                "devices_used": runtime.devices,
                "max_seq_length": max_len,
            },
        )
    return Run(
        spec=spec,
        task=task,
        progress=progress,
        checkpointer=checkpointer,
        runtime=runtime,
        teacher_config=teacher_config,
        tokenizer=tokenizer,
        train=train,
        evaluation=evaluation,
        pad_id=int(tokenizer.pad_token_id),
        max_len=max_len,
        teacher=teacher,
        needs_finetune=needs_finetune,
        timings=timings,
        devices_warning=devices.warning,
    )


def usable_seq_len(config: dict[str, Any], requested: int) -> int:
    """``requested``, or fewer where the teacher's position table holds fewer."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return requested
    if families.for_config(config).position_offset:  # RoBERTa's ids start after padding
        positions -= int(config.get("pad_token_id", 1)) + 1
    return min(requested, positions)
