"""Where a sweep's candidates go (app/sweeps/axis.py): evenly by layer count, so a
round never jumps over a layer count its bracket spans; geometric without steps."""

from __future__ import annotations

import itertools
import math

import pytest

from app.jobspec.speed_plan import MARGIN
from app.sweeps import policy
from app.sweeps.axis import SpeedAxis, steps_of
from app.sweeps.policy import CandidateResult, Goal

# Each layer count's fastest speed-up by the latency fit of MiniLM-L6 (FFN 384, 64
# tokens) measured on the AMD host (bench/results/sst2-full-amd2-turns.json's fit),
# six layers first.
MINILM = [[6, 1.31], [5, 1.568], [4, 1.954], [3, 2.591], [2, 3.846], [1, 7.457]]
STEPS = steps_of(MINILM)
LO, HI = policy.axis_for(7.457)


def layers(s: float) -> int:
    """The layer count the planner gives a speed-up target: the most layers whose
    fastest shape reaches it (with its margin)."""
    return sum(1 for step in STEPS if step >= s) or 1


def test_steps_are_the_fits_speedups_less_the_planners_margin_ascending():
    assert sorted(STEPS) == STEPS
    assert STEPS[-1] == pytest.approx(7.457 / (1 + MARGIN), abs=1e-3)
    assert len(STEPS) == 6


def test_without_steps_points_are_geometric():
    axis = SpeedAxis(1.3, 6.0)
    assert axis.between(1.3, 6.0, 3) == pytest.approx([1.3 * (6 / 1.3) ** (i / 3) for i in (1, 2)])


def test_each_layer_count_inside_the_axis_is_one_unit_long():
    axis = SpeedAxis(LO, HI, tuple(STEPS))
    inner = [s for s in STEPS if LO < s < HI]
    lengths = [axis.position(b) - axis.position(a) for a, b in itertools.pairwise(inner)]
    assert lengths == pytest.approx([1.0] * len(lengths))


@pytest.mark.parametrize("u", [0.0, 0.3, 1.0, 2.5, 3.99])
def test_position_and_speedup_invert_each_other(u: float):
    axis = SpeedAxis(LO, HI, tuple(STEPS))
    end = axis.position(HI)
    u = min(u, end)
    assert axis.position(axis.speedup(u)) == pytest.approx(u)
    assert axis.speedup(0.0) == pytest.approx(LO)
    assert axis.speedup(end) == pytest.approx(HI)


def test_a_round_of_two_tries_the_layer_count_geometric_points_jumped_over():
    """The 0.97 sweep of 2026-12-07 (two workers): its ends were 1.3x (met) and the far
    end (missed); geometric points planned three layers and one, never two, where a
    floor of 0.97 lies for MiniLM on SST-2."""
    goal = Goal(policy.MIN_RETENTION, 0.97)
    ends = [
        CandidateResult(0, LO, 1.36, 1.02, 0.9, 10.0, 1),
        CandidateResult(1, HI, 8.5, 0.94, 0.85, 1.5, 1),
    ]
    kwargs = dict(goal=goal, results=ends, budget=4, parallel=2, lo=LO, hi=HI)
    geometric = policy.next_round(**kwargs)
    by_layers = policy.next_round(**kwargs, steps=STEPS)
    assert 2 not in {layers(c.speedup) for c in geometric}
    assert {layers(c.speedup) for c in by_layers} == {4, 2}


def test_a_sweep_on_a_curve_set_by_layer_count_finds_the_fastest_layer_count_that_keeps_the_floor():
    # Retention lost mostly per layer removed, a little as the FFN narrows in a band.
    keep = {6: 1.0, 5: 0.997, 4: 0.993, 3: 0.988, 2: 0.978, 1: 0.94}

    def retention(s: float) -> float:
        k = layers(s)
        band_lo = STEPS[-k - 1] if k < len(STEPS) else 1.0
        return keep[k] - 0.006 * math.log(s / band_lo)

    goal = Goal(policy.MIN_RETENTION, 0.97)
    for parallel in (1, 2):
        results: list[CandidateResult] = []
        batch = policy.first_round(lo=LO, hi=HI, budget=4, parallel=parallel, steps=STEPS)
        while batch:
            results += [
                CandidateResult(c.index, c.speedup, c.speedup, retention(c.speedup), 0.9, 1, 1)
                for c in batch
            ]
            batch = policy.next_round(
                goal=goal,
                results=results,
                budget=4,
                parallel=parallel,
                lo=LO,
                hi=HI,
                steps=STEPS,
            )
        answer = policy.pick(goal, results)
        picked = next(r for r in results if r.index == answer.pick_index)
        assert answer.met and layers(picked.speedup_target) == 2, (parallel, results)
