"""The ``teacher_finetune`` phase: a head for the task, trained on the teacher, when the
teacher came without one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from workers.engine.checkpoint import cpu_state, rng_state, set_rng_state
from workers.engine.evaluate import Quality
from workers.engine.phases.run import Run
from workers.engine.run_state import Curve, LoopState, RunState, StateDict
from workers.engine.teacher import finetune_teacher


@dataclass(frozen=True)
class FinetunedTeacher:
    """What fine-tuning left: all None when the teacher already had a trained head."""

    curve: Curve | None = None
    scores: Quality | None = None
    # The fine-tuned weights, which every later checkpoint carries.
    weights: StateDict | None = None

    def checkpoint_fields(self) -> dict[str, Any]:
        """The RunState fields that carry it."""
        return {
            "teacher": self.weights,
            "teacher_curve": self.curve,
            "teacher_scores": dataclasses.asdict(self.scores) if self.scores else None,
        }


def finetune(run: Run, resumed: RunState | None) -> FinetunedTeacher:
    """Fine-tune ``run.teacher`` in place where it needs it, or take what a checkpoint
    made after fine-tuning holds; a checkpoint made during it is continued."""
    if not run.needs_finetune:
        return FinetunedTeacher()
    stage = resumed.stage if resumed is not None else None
    if resumed is not None and stage in ("teacher_done", "distilling"):
        # The weights are in run.teacher already (preparing loaded them).
        if stage == "teacher_done":
            assert resumed.rng is not None
            set_rng_state(resumed.rng)
        assert resumed.teacher_scores is not None
        return FinetunedTeacher(
            curve=resumed.teacher_curve,
            scores=run.task.scores_type(**resumed.teacher_scores),
            weights=resumed.teacher,
        )
    run.progress.start_phase("teacher_finetune")
    with run.timed("teacher_finetune"):
        teacher = run.teacher

        def save(loop: LoopState) -> None:
            run.checkpointer.save(
                RunState(stage="teacher_finetune", loop=loop, teacher=cpu_state(teacher))
            )

        curve = finetune_teacher(
            teacher,
            run.train,
            training=run.spec.training,
            pad_token_id=run.pad_id,
            runtime=run.runtime,
            progress=run.progress,
            # Past the early return, a resumed run was stopped in fine-tuning.
            hooks=run.loop_hooks(save, resume=resumed.loop if resumed is not None else None),
        )
        scores = run.quality(teacher)
        done = FinetunedTeacher(curve=curve, scores=scores, weights=cpu_state(teacher))
        if run.spec.training.checkpoint_every_steps:
            run.checkpointer.save(
                RunState(stage="teacher_done", rng=rng_state(), **done.checkpoint_fields())
            )
        run.progress.log(
            f"teacher fine-tuned: {scores.summary()}",
            data={"stage": "teacher_finetune", **scores.as_dict()},
        )
    return done
