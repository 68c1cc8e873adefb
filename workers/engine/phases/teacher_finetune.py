"""The ``teacher_finetune`` phase: a head for the task, trained on the teacher, when the
teacher came without one, or taken from a cached teacher an earlier run with the same
key fine-tuned (``teacher_key.py``, ``teacher_cache.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from workers.engine.checkpoint import cpu_state, rng_state, set_rng_state
from workers.engine.evaluate import Quality
from workers.engine.phases.run import Run
from workers.engine.run_state import Curve, LoopState, RngState, RunState, StateDict
from workers.engine.teacher import finetune_teacher
from workers.engine.teacher_cache import (
    CachedTeacher,
    UnusableEntry,
    load_weights,
    read_entry,
    write_entry,
)


@dataclass(frozen=True)
class FinetunedTeacher:
    """What fine-tuning left: all None when the teacher already had a trained head."""

    curve: Curve | None = None
    scores: Quality | None = None
    # The fine-tuned weights, which every later checkpoint carries.
    weights: StateDict | None = None
    # Taken from a cached teacher instead of fine-tuned here; finetune_s is the seconds
    # fine-tuning took (where it was done: on a hit, the time this run saved).
    from_cache: bool = False
    finetune_s: float | None = None

    def checkpoint_fields(self) -> dict[str, Any]:
        """The RunState fields that carry it."""
        return {
            "teacher": self.weights,
            "teacher_curve": self.curve,
            "teacher_scores": dataclasses.asdict(self.scores) if self.scores else None,
        }


def finetune(run: Run, resumed: RunState | None) -> FinetunedTeacher:
    """Fine-tune ``run.teacher`` in place where it needs it, or take what a checkpoint
    made after fine-tuning holds, or a cached teacher of this key; a checkpoint made
    during fine-tuning is continued."""
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
    cached = _cached_teacher(run)
    if cached is not None:
        return _from_cache(run, cached)
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
        rng = rng_state()
        done = FinetunedTeacher(curve=curve, scores=scores, weights=cpu_state(teacher))
        if run.spec.training.checkpoint_every_steps:
            run.checkpointer.save(
                RunState(stage="teacher_done", rng=rng, **done.checkpoint_fields())
            )
        run.progress.log(
            f"teacher fine-tuned: {scores.summary()}",
            data={"stage": "teacher_finetune", **scores.as_dict()},
        )
    done = dataclasses.replace(done, finetune_s=run.timings["teacher_finetune"])
    _offer(run, done, rng)
    return done


def cache_key(run: Run) -> str | None:
    """The key this run looks a fine-tuned teacher up and offers its own under, if any."""
    spec = run.spec
    return spec.teacher_cache_key if spec.training.teacher_cache else None


def _cached_teacher(run: Run) -> CachedTeacher | None:
    """The entry the spec names, loaded into ``run.teacher``; None (with a warning where
    it was unusable) to fine-tune instead."""
    key, path = cache_key(run), run.spec.cached_teacher
    if key is None or path is None:
        return None
    try:
        cached = read_entry(path, key=key)
        load_weights(run.teacher, cached.weights)
    except UnusableEntry as e:
        # Nothing is lost but the time fine-tuning takes, which the run now spends.
        run.progress.log(
            f"{e}; fine-tuning the teacher instead",
            level="warning",
            data={"stage": "teacher_finetune", "teacher_cached": False},
        )
        return None
    return cached


def _from_cache(run: Run, cached: CachedTeacher) -> FinetunedTeacher:
    with run.timed("teacher_finetune"):
        # Scored here, on this run's eval split (the key does not hold it).
        scores = run.quality(run.teacher)
        # Where fine-tuning left the generators: the rest of the run draws as it would
        # have after fine-tuning here, and trains the same student.
        set_rng_state(cached.rng)
        run.progress.log(
            f"teacher reused from the cache (fine-tuning it took {cached.finetune_s:.1f} s "
            f"when it was cached): {scores.summary()}",
            data={
                "stage": "teacher_finetune",
                "teacher_cached": True,
                "teacher_cache_key": cached.key,
                "finetune_s_saved": round(cached.finetune_s, 3),
                **scores.as_dict(),
            },
        )
    # No teacher_done checkpoint: a resumed attempt finds the same entry.
    return FinetunedTeacher(
        curve=cached.curve,
        scores=scores,
        weights=cached.weights,
        from_cache=True,
        finetune_s=cached.finetune_s,
    )


def _offer(run: Run, done: FinetunedTeacher, rng: RngState) -> None:
    """Hand the fine-tuned teacher to a callback that keeps them, right away: a student
    phase that fails later leaves it kept all the same."""
    key = cache_key(run)
    if key is None or not run.progress.keeps_teachers:
        return
    assert done.weights is not None and done.finetune_s is not None
    path = write_entry(
        run.spec.work_dir / "teacher-cache" / "teacher.safetensors",
        key=key,
        weights=done.weights,
        rng=rng,
        curve=done.curve,
        finetune_s=done.finetune_s,
    )
    try:
        run.progress.teacher_finetuned(path, {"key": key, "finetune_s": done.finetune_s})
    finally:
        path.unlink(missing_ok=True)
