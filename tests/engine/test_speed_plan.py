"""The speed planner (speed_plan.py): a latency fit from measured shapes, the shape with
the most parameters that reaches the target, the verification that corrects a fit that
was too hopeful, and the bounds a target is checked against.

``measure`` is the planner's window on the hardware; here it is a known latency law, so
what the planner should choose can be worked out by brute force."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, replace

import pytest

from app.jobspec import speed_plan
from app.jobspec.plan import Shape, TeacherSizes, shapes_allowed
from app.jobspec.speed_plan import (
    LatencyFit,
    SpeedPlan,
    fit_latency,
    flops_bound,
    layer_flops,
    plan_for_speedup,
)
from workers.engine.spec import EngineInputError

MINILM = TeacherSizes(
    num_layers=6,
    hidden_size=384,
    intermediate_size=1536,
    num_heads=12,
    num_kv_heads=12,
    head_dim=32,
)
SEQ = 128
# Roughly MiniLM-L6 on two CPU threads (bench/results/sst2-*.json).
LAW = LatencyFit(fixed_ms=1.0, layer_ms=0.6, ms_per_gflop=780.0)


class Law:
    """Latency of a shape by ``fit``, plus ``extra`` ms per layer the fit cannot see
    for FFNs narrower than ``narrow`` (kernels that are slower than their FLOPs)."""

    def __init__(self, fit: LatencyFit = LAW, extra: float = 0.0, narrow: int = 0) -> None:
        self.fit, self.extra, self.narrow, self.calls = fit, extra, narrow, []

    def ms(self, shape: Shape) -> float:
        slow = self.extra * shape.num_layers if shape.intermediate_size < self.narrow else 0.0
        return self.fit.predict(MINILM, shape, SEQ) + slow

    def __call__(self, shapes: Sequence[Shape]) -> list[float]:
        self.calls.append(list(shapes))
        return [self.ms(s) for s in shapes]


def brute_force(law: Law, structured, need: float) -> Shape:
    teacher = law.ms(MINILM.teacher_shape)
    fits = [s for s in shapes_allowed(MINILM, structured) if teacher / law.ms(s) >= need]
    return max(fits, key=lambda s: (MINILM.shape_params(s), s.num_layers))


def test_the_fit_recovers_a_linear_latency_law():
    law = Law()
    shapes = speed_plan.calibration_shapes(MINILM, ("layers", "ffn"))
    fit = fit_latency(MINILM, shapes, law(shapes), SEQ)
    assert fit.fixed_ms == pytest.approx(LAW.fixed_ms, rel=1e-6)
    assert fit.layer_ms == pytest.approx(LAW.layer_ms, rel=1e-6)
    assert fit.ms_per_gflop == pytest.approx(LAW.ms_per_gflop, rel=1e-6)


def test_a_negative_coefficient_is_dropped_not_kept():
    shapes = speed_plan.calibration_shapes(MINILM, ("layers", "ffn"))
    # Latency that falls as FLOPs grow is noise; the fit must not price FLOPs negatively.
    ms = [5.0 + 2.0 * s.num_layers - 1e-9 * layer_flops(MINILM, s, SEQ) for s in shapes]
    fit = fit_latency(MINILM, shapes, ms, SEQ)
    assert fit.ms_per_gflop == 0.0 and fit.layer_ms > 0


@pytest.mark.parametrize("target", [1.5, 2.0, 3.0, 4.0])
def test_the_plan_is_the_largest_shape_that_is_fast_enough(target):
    law = Law()
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), target, measure=law, seq_len=SEQ, threads=2)
    # The first choice keeps the wide margin; once verified, the climb takes the largest
    # shape that beats the target by the narrow one.
    first = law.calls[1][1]
    assert first == brute_force(law, ("layers", "ffn"), target * (1 + speed_plan.MARGIN))
    assert plan.shape == brute_force(law, ("layers", "ffn"), target * (1 + speed_plan.CLIMB_MARGIN))
    assert plan.measured_speedup >= target * (1 + speed_plan.CLIMB_MARGIN) and plan.tries <= 2
    # A wider FFN would be too slow.
    wider = replace(plan.shape, intermediate_size=plan.shape.intermediate_size + 8)
    if wider.intermediate_size <= 1536:
        speed = law.ms(MINILM.teacher_shape) / law.ms(wider)
        assert speed < target * (1 + speed_plan.CLIMB_MARGIN)


def test_depth_is_what_a_latency_target_removes_first():
    """Per-layer overhead makes depth the cheaper way to speed: at 2x the plan keeps
    fewer, wider layers than the width-first params_ratio plan of the same size."""
    from app.jobspec.plan import plan_student

    plan = plan_for_speedup(MINILM, ("layers", "ffn"), 2.0, measure=Law(), seq_len=SEQ, threads=2)
    ratio = MINILM.shape_params(plan.shape) / MINILM.teacher_non_embedding
    by_params = plan_student(MINILM, ratio, ffn=True)
    assert plan.shape.num_layers < by_params.num_layers
    assert plan.shape.intermediate_size > by_params.intermediate_size


def test_layers_only_plans_whole_layers():
    law = Law()
    plan = plan_for_speedup(MINILM, ("layers",), 1.8, measure=law, seq_len=SEQ, threads=2)
    assert plan.shape == replace(MINILM.teacher_shape, num_layers=3)
    assert plan.shape == brute_force(law, ("layers",), 1.8 * (1 + speed_plan.MARGIN))


def test_a_prediction_that_proves_hopeful_is_corrected_by_measurement():
    # Narrow FFNs are slower than the fit's FLOPs say: the first choice misses on
    # verification and the planner settles on one that really reaches the target.
    law = Law(extra=0.5, narrow=1400)
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), 2.0, measure=law, seq_len=SEQ, threads=2)
    assert plan.tries > 1
    assert law.ms(MINILM.teacher_shape) / law.ms(plan.shape) >= 2.0
    assert plan.measured_speedup == pytest.approx(law.ms(MINILM.teacher_shape) / law.ms(plan.shape))


class After(Law):
    """``law`` while calibrating; from the first verification on, every student shape
    takes ``factor`` times its time, and those with more than ``above`` parameters
    ``cliff`` ms more (what the fit, made before, cannot know)."""

    def __init__(self, factor: float, above: int = 10**12, cliff: float = 0.0) -> None:
        super().__init__()
        self.factor, self.above, self.cliff = factor, above, cliff

    def __call__(self, shapes: Sequence[Shape]) -> list[float]:
        self.calls.append(list(shapes))
        if len(self.calls) == 1:
            return [self.ms(s) for s in shapes]
        return [self.after(s) for s in shapes]

    def after(self, shape: Shape) -> float:
        if shape == MINILM.teacher_shape:
            return self.ms(shape)
        cliff = self.cliff if MINILM.shape_params(shape) > self.above else 0.0
        return self.ms(shape) * self.factor + cliff


def test_a_fit_that_proves_pessimistic_is_climbed_to_the_largest_fast_shape():
    # Students run 8% faster than calibration said: the first choice verifies with room
    # to spare, and the climb, scaled by that measurement, finds the largest shape that
    # really beats the target by the climb's margin.
    law = After(factor=0.92)
    target = 2.0
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), target, measure=law, seq_len=SEQ, threads=2)
    first = law.calls[1][1]
    teacher = law.ms(MINILM.teacher_shape)
    fast = [
        s
        for s in shapes_allowed(MINILM, ("layers", "ffn"))
        if s != MINILM.teacher_shape
        and teacher / law.after(s) >= target * (1 + speed_plan.CLIMB_MARGIN)
    ]
    assert plan.shape == max(fast, key=lambda s: (MINILM.shape_params(s), s.num_layers))
    assert MINILM.shape_params(plan.shape) > MINILM.shape_params(first)
    assert plan.measured_speedup == pytest.approx(teacher / law.after(plan.shape))
    assert 2 <= plan.tries <= speed_plan.MAX_TRIES


def test_a_miss_while_climbing_keeps_the_shape_already_verified():
    # Every shape larger than the first choice hits a cliff: the climb misses, never
    # times a shape twice nor one at least as large as a miss, and the plan is the
    # first choice with its own measurement.
    probe = Law()
    first = brute_force(probe, ("layers", "ffn"), 2.0 * (1 + speed_plan.MARGIN))
    law = After(factor=0.92, above=MINILM.shape_params(first), cliff=5.0)
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), 2.0, measure=law, seq_len=SEQ, threads=2)
    assert plan.shape == first
    assert plan.measured_speedup == pytest.approx(law.ms(MINILM.teacher_shape) / law.after(first))
    timed = [call[1] for call in law.calls[1:]]
    assert len(timed) == plan.tries and plan.tries > 1
    assert len(set(timed)) == len(timed)
    misses = timed[1:]
    for i, miss in enumerate(misses):
        for later in misses[i + 1 :]:
            assert not all(a >= b for a, b in zip(astuple(later), astuple(miss), strict=True))


class SlowTeacherOnce(Law):
    """The fit's law, but the teacher's verification readings come out ``slow`` times
    too slow (the other process of a busy host) until ``clean`` timings have passed."""

    def __init__(self, slow: float, clean: int) -> None:
        super().__init__()
        self.slow, self.clean = slow, clean

    def __call__(self, shapes: Sequence[Shape]) -> list[float]:
        out = super().__call__(shapes)
        verifying = len(self.calls) > 1
        if verifying and self.clean > 0 and shapes[0] == MINILM.teacher_shape:
            self.clean -= 1
            out[0] *= self.slow
        return out


def test_a_verification_far_faster_than_the_fit_is_timed_again():
    # One slow teacher reading doubles the first choice's speed-up: it is timed again at
    # once, and the clean reading is the one the plan keeps and climbs from.
    law = SlowTeacherOnce(slow=2.2, clean=1)
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), 2.7, measure=law, seq_len=SEQ, threads=2)
    assert law.calls[2] == law.calls[1]  # the first choice, timed twice
    plain = Law()
    clean = plan_for_speedup(MINILM, ("layers", "ffn"), 2.7, measure=plain, seq_len=SEQ, threads=2)
    assert (plan.shape, plan.measured_speedup) == (
        clean.shape,
        pytest.approx(clean.measured_speedup),
    )
    # A reading within the fit's noise is not timed again.
    assert all(a != b for a, b in zip(plain.calls, plain.calls[1:], strict=False))


def test_a_climb_never_trusts_a_shape_far_beyond_its_fit():
    # Every verification reads the teacher twice as slow: each is timed again to no
    # avail, but the climb still goes no further than 1.25x past what the fit priced.
    law = SlowTeacherOnce(slow=2.2, clean=100)
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), 2.7, measure=law, seq_len=SEQ, threads=2)
    teacher = law.ms(MINILM.teacher_shape)
    assert teacher / law.ms(plan.shape) >= 2.7 / speed_plan.SUSPECT_FASTER / (1 + speed_plan.MARGIN)


def test_an_unreachable_target_says_the_most_it_can_be():
    law = Law()
    fastest = max(
        law.ms(MINILM.teacher_shape) / law.ms(s) for s in shapes_allowed(MINILM, ("layers",))
    )
    with pytest.raises(EngineInputError) as caught:
        plan_for_speedup(MINILM, ("layers",), 50.0, measure=law, seq_len=SEQ, threads=2)
    assert caught.value.code == "target_unreachable"
    assert f"{fastest:.2f}x" in caught.value.message
    assert "'ffn'" in caught.value.message  # what to allow for more


def test_the_flops_bound_is_the_teacher_over_the_smallest_student():
    per_layer = layer_flops(MINILM, MINILM.teacher_shape, SEQ)
    assert per_layer == 2 * (4 * 384 * 384 + 2 * 384 * 1536) + 4 * SEQ * 384
    assert flops_bound(MINILM, ("layers",), SEQ) == pytest.approx(6.0)
    one_narrow = replace(MINILM.teacher_shape, num_layers=1, intermediate_size=384)
    assert flops_bound(MINILM, ("layers", "ffn"), SEQ) == pytest.approx(
        6 * per_layer / layer_flops(MINILM, one_narrow, SEQ)
    )


def test_the_plan_survives_a_round_trip_through_json():
    plan = plan_for_speedup(MINILM, ("layers", "ffn"), 2.0, measure=Law(), seq_len=SEQ, threads=2)
    assert SpeedPlan.from_dict(plan.as_dict()).shape == plan.shape
