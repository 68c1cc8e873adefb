"""The sweep's search and answer (app/sweeps/policy.py), run against synthetic curves
of retention and latency over the speed-up axis: no engine, no service."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from app.sweeps import policy, repeats
from app.sweeps.policy import Candidate, CandidateResult, Goal

LO, HI = 1.3, 6.0
TEACHER_MS = 20.0
Curve = Callable[[float], float]


def linear(threshold: float, floor: float = 0.99, slope: float = 0.02) -> Curve:
    """Retention that falls linearly with the speed-up, crossing ``floor`` at
    ``threshold``."""
    return lambda s: floor - slope * (s - threshold)


def _result(c: Candidate, retention: Curve, *, ok: bool = True) -> CandidateResult:
    if not ok:
        return CandidateResult(
            c.index, c.speedup, None, None, None, None, None, ok=False, repeat=c.repeat
        )
    return CandidateResult(
        repeat=c.repeat,
        index=c.index,
        speedup_target=c.speedup,
        speedup=c.speedup,
        retention=retention(c.speedup),
        score=0.9 * retention(c.speedup),
        latency_ms=TEACHER_MS / c.speedup,
        size_bytes=int(100e6 / c.speedup),
    )


def sweep(
    goal: Goal,
    retention: Curve,
    *,
    budget: int,
    parallel: int,
    fails: Callable[[float], bool] = lambda s: False,
) -> tuple[list[CandidateResult], list[int]]:
    """Every result, and the size of each round."""
    results: list[CandidateResult] = []
    rounds = []
    batch = policy.first_round(lo=LO, hi=HI, budget=budget, parallel=parallel)
    while batch:
        assert len(batch) <= parallel
        rounds.append(len(batch))
        results += [_result(c, retention, ok=not fails(c.speedup)) for c in batch]
        batch = policy.next_round(
            goal=goal, results=results, budget=budget, parallel=parallel, lo=LO, hi=HI
        )
    return results, rounds


def _no_repeats(results: list[CandidateResult]) -> None:
    """Each speed-up searched once; trained a second time only as a repeat near the
    floor (app/sweeps/repeats.py), and only once."""
    searched = [r.speedup_target for r in results if r.repeat == 0]
    assert len(set(searched)) == len(searched), searched
    again = [r for r in results if r.repeat]
    assert all(r.repeat == 1 for r in again)
    assert len({r.speedup_target for r in again}) == len(again)
    first = {r.speedup_target: r for r in results if r.repeat == 0}
    for r in again:
        assert abs(first[r.speedup_target].retention - 0.99) <= repeats.MARGIN
    assert [r.index for r in results] == list(range(len(results)))
    assert all(LO <= r.speedup_target <= HI for r in results)


def test_the_first_round_splits_the_axis_geometrically_leaving_its_ends_out():
    batch = policy.first_round(lo=1.3, hi=5.2, budget=6, parallel=3)
    assert [c.speedup for c in batch] == [1.838, 2.6, 3.677]  # 1.3 x 4^(i/4)
    assert [c.index for c in batch] == [0, 1, 2]
    # One worker: the middle, as bisection starts.
    assert [c.speedup for c in policy.first_round(lo=1.3, hi=5.2, budget=6, parallel=1)] == [2.6]
    # The budget caps the round.
    assert len(policy.first_round(lo=1.3, hi=5.2, budget=2, parallel=8)) == 2
    # An axis too short to spread: the bound alone.
    assert [c.speedup for c in policy.first_round(lo=1.3, hi=1.3, budget=6, parallel=4)] == [1.3]
    with pytest.raises(ValueError):
        policy.first_round(lo=1.0, hi=2.0, budget=6, parallel=2)


@pytest.mark.parametrize("parallel", [1, 2, 3, 4])
@pytest.mark.parametrize("threshold", [1.32, 1.45, 2.0, 2.7, 4.9, 5.95])
def test_min_retention_converges_to_the_threshold_within_the_bracket_ratio(parallel, threshold):
    goal = Goal("min_retention", 0.99)
    results, _ = sweep(goal, linear(threshold), budget=16, parallel=parallel)
    _no_repeats(results)
    answer = policy.pick(goal, results)
    assert answer.met
    picked = results[answer.pick_index]
    # The fastest student found that keeps the floor, within the ratio of the true one.
    assert picked.speedup_target <= threshold < picked.speedup_target * policy.BRACKET_RATIO
    # The bracket's upper end: the slowest faster candidate that missed, or the axis's
    # end when the threshold lies within the bracket ratio of it (not worth a student).
    missed = min((r.speedup_target for r in results if r.retention < 0.99), default=HI)
    assert missed / picked.speedup_target <= policy.BRACKET_RATIO


@pytest.mark.parametrize("parallel", [1, 2, 4])
@pytest.mark.parametrize("limit_ms", [15.0, 12.0, 8.0, 5.0, 3.4])
def test_max_latency_converges_to_the_least_compressed_student_that_fits(parallel, limit_ms):
    goal = Goal("max_latency_ms", limit_ms)
    threshold = TEACHER_MS / limit_ms  # the least speed-up that fits
    results, _ = sweep(goal, linear(2.0), budget=16, parallel=parallel)
    _no_repeats(results)
    answer = policy.pick(goal, results)
    assert answer.met
    picked = results[answer.pick_index]
    assert picked.latency_ms <= limit_ms
    assert threshold <= picked.speedup_target < threshold * policy.BRACKET_RATIO
    # Retention falls with speed: the most accurate that fits is the least compressed.
    assert picked.retention == max(r.retention for r in results if r.latency_ms <= limit_ms)


@pytest.mark.parametrize("budget", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("parallel", [1, 2, 3, 8])
def test_the_budget_is_respected_and_rounds_are_one_per_worker(budget, parallel):
    goal = Goal("min_retention", 0.99)
    results, rounds = sweep(goal, linear(2.3), budget=budget, parallel=parallel)
    _no_repeats(results)
    assert len(results) <= budget
    assert all(n <= parallel for n in rounds)
    # A narrow bracket is not refined past the ratio, however many workers are idle.
    assert len(results) >= min(budget, 2)


def test_a_narrow_bracket_spends_no_more_than_it_needs():
    goal = Goal("min_retention", 0.99)
    # Steep: no candidate within a seed's noise of the floor, so none is trained again.
    steep = linear(2.1, slope=0.3)
    results = [_result(Candidate(0, 2.0), steep), _result(Candidate(1, 2.3), steep)]
    batch = policy.next_round(goal=goal, results=results, budget=16, parallel=8, lo=LO, hi=HI)
    # 2.0 to 2.3 is 1.15x: one point halves it below 1.1x.
    assert len(batch) == 1 and 2.0 < batch[0].speedup < 2.3 and batch[0].index == 2
    narrow = [*results, _result(batch[0], steep)]
    assert policy.next_round(goal=goal, results=narrow, budget=16, parallel=8, lo=LO, hi=HI) == []
    # Gentle: the ends lie within a point of the floor, and the round left trains them
    # again, searching nothing new.
    gentle = [_result(Candidate(c.index, c.speedup), linear(2.1)) for c in (*results, batch[0])]
    again = policy.next_round(goal=goal, results=gentle, budget=16, parallel=8, lo=LO, hi=HI)
    assert again and all(c.repeat == 1 for c in again)


def test_a_non_monotone_curve_still_ends_with_a_student_that_meets_the_floor():
    # Seed noise: a dip below the floor at 1.8-2.0x, above it again to 2.6x.
    def bumpy(s: float) -> float:
        return 0.985 if 1.8 <= s <= 2.0 else linear(2.6)(s)

    goal = Goal("min_retention", 0.99)
    for parallel in (1, 2, 3, 5):
        results, _ = sweep(goal, bumpy, budget=12, parallel=parallel)
        _no_repeats(results)
        answer = policy.pick(goal, results)
        assert answer.met
        picked = results[answer.pick_index]
        assert picked.retention >= 0.99
        assert picked.latency_ms == min(r.latency_ms for r in results if r.retention >= 0.99)


def test_the_end_of_the_axis_the_results_point_at_settles_it_in_the_next_round():
    goal = Goal("min_retention", 0.99)
    # Every first candidate misses; the next round tries 1.3x, which loses too much
    # too: nothing more is tried, the best found is returned.
    results, rounds = sweep(goal, linear(1.0, slope=0.1), budget=8, parallel=3)
    assert rounds == [3, 3] and LO in [r.speedup_target for r in results[3:]]
    answer = policy.pick(goal, results)
    assert not answer.met and results[answer.pick_index].speedup_target == LO
    assert "None of 6 candidates kept 99.00%" in answer.message
    assert "kept the most" in answer.message
    # Every first candidate keeps enough; the fastest planned does too: nothing faster
    # to look for.
    results, rounds = sweep(goal, linear(10.0), budget=8, parallel=3)
    answer = policy.pick(goal, results)
    assert rounds == [3, 3] and answer.met and results[answer.pick_index].speedup_target == HI
    # One worker bisects: its one point stays inside the bracket, not on an end.
    results, _ = sweep(goal, linear(10.0), budget=3, parallel=1)
    assert HI not in [r.speedup_target for r in results]


def test_no_student_fits_the_latency_and_the_fastest_is_returned():
    goal = Goal("max_latency_ms", 1.0)  # the teacher takes 20 ms; 6x at most is 3.3 ms
    results, rounds = sweep(goal, linear(2.0), budget=8, parallel=2)
    assert rounds == [2, 2]
    answer = policy.pick(goal, results)
    assert not answer.met
    assert results[answer.pick_index].speedup_target == HI
    assert "None of 4 candidates answered within 1 ms; returned the fastest" in answer.message


def test_a_failed_candidate_is_not_tried_again_and_does_not_bracket():
    goal = Goal("min_retention", 0.99)
    first = policy.first_round(lo=LO, hi=HI, budget=10, parallel=3)[0].speedup
    results, _ = sweep(goal, linear(2.0), budget=10, parallel=3, fails=lambda s: s == first)
    _no_repeats(results)
    assert sum(not r.ok for r in results) == 1
    answer = policy.pick(goal, results)
    picked = results[answer.pick_index]
    assert answer.met and picked.speedup_target <= 2.0 < picked.speedup_target * 1.1


def test_every_candidate_failed():
    goal = Goal("min_retention", 0.99)
    results, _ = sweep(goal, linear(2.0), budget=4, parallel=2, fails=lambda s: True)
    answer = policy.pick(goal, results)
    assert (answer.pick_index, answer.met, answer.front) == (None, False, [])
    assert "failed" in answer.message


def _row(
    index: int, retention: float, latency_ms: float, ok: bool = True, teacher_ms: float = 20.0
) -> CandidateResult:
    speedup = teacher_ms / latency_ms
    return CandidateResult(index, 1.5 + index, speedup, retention, 0.9, latency_ms, 1, ok)


def test_the_pareto_front_is_the_non_dominated_candidates_fastest_first():
    rows = [
        _row(0, 0.995, 10.0),
        _row(1, 0.990, 8.0),
        _row(2, 0.985, 9.0),  # beaten by 1: less kept, slower
        _row(3, 0.970, 5.0),
        _row(4, 0.970, 6.0),  # beaten by 3: as much kept, slower
        _row(5, 0.999, 4.0, ok=False),  # failed: not a point
        _row(6, 0.990, 8.0),  # equal to 1: both stay
    ]
    assert policy.pareto_front(rows) == [3, 1, 6, 0]
    answer = policy.pick(Goal("min_retention", 0.99), rows)
    assert answer.front == [3, 1, 6, 0]
    assert answer.pick_index == 1 and answer.met
    assert policy.pick(Goal("max_latency_ms", 9.5), rows).pick_index == 1
    assert policy.pick(Goal("max_latency_ms", 5.0), rows).pick_index == 3


def test_candidates_timed_under_different_loads_rank_by_their_speed_ups():
    # The SST-2 run's two-worker sweep: one candidate's job timed it (and its teacher)
    # while the other candidate trained beside it; its milliseconds read slower than a
    # slower student's timed on a quiet host. Its speed-up, over a teacher timed in the
    # same pass, does not.
    loaded = _row(0, 0.985, 12.0, teacher_ms=36.0)  # 3.0x
    quiet = _row(1, 0.990, 10.0, teacher_ms=20.0)  # 2.0x
    answer = policy.pick(Goal("min_retention", 0.98), [loaded, quiet])
    assert answer.pick_index == 0 and answer.met
    assert answer.front == [0, 1]
    # A budget in milliseconds is still read against the milliseconds.
    assert policy.pick(Goal("max_latency_ms", 11.0), [loaded, quiet]).pick_index == 1


def test_the_goal_of_a_target():
    class Target:
        min_retention = None
        max_latency_ms = 5

    assert policy.goal_of(Target()) == Goal("max_latency_ms", 5.0)
    with pytest.raises(ValueError):
        Goal("speedup", 2.0)
    assert math.isclose(policy.BRACKET_RATIO, 1.1)


def test_the_axis_ends_short_of_the_fastest_shape_the_fit_predicts():
    # A margin below the fit's fastest: the planner verifies by timing and needs one.
    assert policy.axis_for(4.0) == (1.3, 3.6)
    assert policy.axis_for(1.2) == (1.3, 1.3)  # nothing faster than lo to search
    assert policy.axis_for(40.0) == (1.3, policy.MAX_HI)


def test_a_failed_candidate_does_not_end_a_bisection_with_budget_left():
    goal = Goal("min_retention", 0.99)
    met = CandidateResult(0, 1.747, 1.8, 0.995, 0.9, 10.0, 100)
    failed = CandidateResult(1, 2.026, None, None, None, None, None, ok=False)
    batch = policy.next_round(
        goal=goal, results=[met, failed], budget=4, parallel=1, lo=1.3, hi=2.349
    )
    # The bracket (1.747, 2.349) is unchanged; its middle was tried: a point beside it.
    assert len(batch) == 1 and batch[0].index == 2
    assert 1.747 < batch[0].speedup < 2.349 and batch[0].speedup != 2.026


def test_a_speedup_no_shape_reached_ends_the_axis_below_it():
    goal = Goal("min_retention", 0.99)
    unreachable = CandidateResult(0, 2.6, None, None, None, None, None, ok=False, unreachable=True)
    batch = policy.next_round(
        goal=goal, results=[unreachable], budget=4, parallel=1, lo=1.3, hi=5.2
    )
    # Bisection goes on below the failed point, not above it, and not ending.
    assert len(batch) == 1 and 1.3 <= batch[0].speedup < 2.6
    # A plain failure says nothing about the axis: the sweep does not search below it.
    failed = CandidateResult(0, 2.6, None, None, None, None, None, ok=False)
    other = policy.next_round(goal=goal, results=[failed], budget=4, parallel=1, lo=1.3, hi=5.2)
    assert [c.speedup for c in other] != [c.speedup for c in batch]


def test_an_unreachable_speedup_below_one_that_succeeded_does_not_end_the_axis():
    # Seen with two candidates on two cores: 1.3x refused as unreachable (its fit timed
    # under the other's training) while 5.987x succeeded and missed the floor.
    goal = Goal("min_retention", 0.99)
    refused = CandidateResult(0, 1.3, None, None, None, None, None, ok=False, unreachable=True)
    missed = CandidateResult(1, 5.987, 6.2, 0.944, 0.79, 4.2, 60_000_000)
    batch = policy.next_round(
        goal=goal, results=[refused, missed], budget=4, parallel=2, lo=1.3, hi=6.148
    )
    # The budget left goes between the two, as if 1.3x had plainly failed.
    assert len(batch) == 2 and all(1.3 < c.speedup < 5.987 for c in batch)
    # Above every success, an unreachable speed-up still ends the axis below it.
    high = CandidateResult(1, 6.1, None, None, None, None, None, ok=False, unreachable=True)
    kept = CandidateResult(0, 1.3, 1.35, 0.999, 0.84, 14.0, 80_000_000)
    batch = policy.next_round(
        goal=goal, results=[kept, high], budget=4, parallel=2, lo=1.3, hi=6.148
    )
    assert batch and all(1.3 < c.speedup < 6.1 for c in batch)
