"""``Run``: what every phase after preparing works with. None of it is in a checkpoint:
a resumed run makes it again from the spec."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workers.engine.checkpoint import Checkpointer, SaveLoop
from workers.engine.data import EncodedSplit
from workers.engine.evaluate import Quality, quality
from workers.engine.progress import Progress
from workers.engine.run_state import LoopState
from workers.engine.runtime import Runtime
from workers.engine.spec import CompressionSpec
from workers.engine.tasks import Task
from workers.engine.train import LoopHooks


@dataclass
class Run:
    spec: CompressionSpec
    task: Task
    progress: Progress
    checkpointer: Checkpointer
    runtime: Runtime
    teacher_config: dict[str, Any]
    tokenizer: PreTrainedTokenizerBase
    train: EncodedSplit
    evaluation: EncodedSplit
    pad_id: int
    max_len: int
    # On the run's device; fine-tuned in place when it has no head for the task.
    teacher: PreTrainedModel
    needs_finetune: bool
    # Seconds per phase, for the report.
    timings: dict[str, float] = field(default_factory=dict)
    # Why the run trains on fewer devices than training.devices asked for, if it does.
    devices_warning: str | None = None

    def timed(self, phase: str) -> contextlib.AbstractContextManager[None]:
        return timed(self.timings, phase)

    def quality(self, model: PreTrainedModel) -> Quality:
        """``model``'s scores on the eval split."""
        return quality(
            model,
            self.evaluation,
            batch_size=self.spec.training.batch_size,
            pad_token_id=self.pad_id,
            runtime=self.runtime,
            progress=self.progress,
            task=self.task,
            label_names=self.spec.label_names,
        )

    def loop_hooks(
        self,
        save: SaveLoop,
        resume: LoopState | None,
        after_step: Callable[[int], None] | None = None,
    ) -> LoopHooks:
        """A training loop's checkpointing at the spec's interval."""
        return LoopHooks(
            checkpoint_every=self.spec.training.checkpoint_every_steps,
            save=save,
            resume=resume,
            after_step=after_step,
        )


@contextlib.contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        # Rounds (and a speed plan) enter a phase more than once: their times add up.
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start
