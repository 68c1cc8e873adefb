"""Which students a sweep trains, and which one answers it (docs/sweeps.md).

A sweep answers a target in the user's terms by training candidates along one axis, the
speed-up over the teacher: each candidate is a child job with target ``{speedup: s,
runtime: r}``, which the planner turns into the widest shape measured to reach ``s``.

- ``min_retention``: the fastest student that keeps at least that share of the teacher's
  score. Retention falls, roughly, as the speed-up rises, so the answer lies at the
  threshold where it crosses the floor: the search brackets that threshold between the
  fastest candidate that met the floor and the slowest faster one that missed it.
- ``max_latency_ms``: the most accurate student that fits. Latency falls as the speed-up
  rises, and the least compressed student that fits is, roughly, the most accurate one:
  the search brackets the threshold between the slowest candidate that fits and the
  fastest slower one that does not.

Chosen: adaptive rounds of ``parallel`` candidates (one per worker), each round a
k-section of the current bracket, rather than every candidate at
once on a fixed grid or one at a time. Why:

- The curve is monotone enough to bisect. Retention against speed-up falls as layers and
  neurons go (bench/results/: 99.5% at 2.4x, less at 3x on SST-2), with seed noise of a
  few tenths of a point: bracketing finds the threshold to within ``ratio`` in
  log(hi/lo)/log(k+1) rounds, where a grid needs hi/lo spread over every candidate.
- Workers run in parallel, so a round of ``parallel`` children costs the wall time of
  one child: k-section with k = parallel uses them all, where bisection would leave all
  but one idle. With one worker it is plain bisection.
- A round is planned once all its children have ended, from their results only: the
  plan is a function of the results, so a parent that resumes after a crash plans the
  same round again.
- Equal parts by layer count, geometric within a layer count (app/sweeps/axis.py):
  retention falls most where a layer goes, so a round spreads its points over the layer
  counts the bracket spans, from the steps of the parent's latency fit; plain geometric
  points skipped the two-layer band of a six-layer teacher (2026-12-07). Geometric
  within, because speed-ups compose multiplicatively (1.3x to 1.43x is the same step in
  latency as 3x to 3.3x), and the stopping width is a ratio for the same reason.
- The first round is a k-section of the whole axis, its ends left out: a candidate at
  an end mostly tells what was known (1.3x keeps the floor, the fastest shape does not)
  and a sweep of four on two workers spent half its budget on them (2026-12-07). Once
  every candidate lies on one side of the goal, the next round of two or more includes
  the end of the axis on the other side: a student at ``lo`` that misses the floor
  (nothing will meet it) or one at ``hi`` that meets it (nothing faster can be
  planned) ends the sweep.

A candidate that failed (``ok`` False) says nothing about the curve: it is never tried
again and never brackets. Where one training cannot tell which side of the floor the
answer's candidates fall, they are trained again (repeats.py): the near miss at the
bracket's top as the next round's first point, the pick once the search has settled;
the search reads each such target as the mean of its trainings. The budget is a
number of candidates; the time budget (``budget.max_seconds``) is the
platform's to enforce, by not starting a round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from app.sweeps import repeats
from app.sweeps.axis import DECIMALS, SpeedAxis
from app.sweeps.candidates import (
    MAX_LATENCY_MS,
    MIN_RETENTION,
    Answer,
    Candidate,
    CandidateResult,
    Goal,
    goal_of,
)

__all__ = [
    "MAX_LATENCY_MS",
    "MIN_RETENTION",
    "Answer",
    "Candidate",
    "CandidateResult",
    "Goal",
    "goal_of",
]

# The slowest candidate worth training: below 1.3x a student saves too little to be
# worth serving instead of its teacher, and the planner's steps (whole layers, FFN
# blocks) are coarse there.
DEFAULT_LO = 1.3
# The search stops when the bracket is this narrow (its ends' speed-ups' ratio): 10% is
# about one FFN step of the planner, and finer than the spread of the timings.
BRACKET_RATIO = 1.1


# The fastest end of the axis, as a share of the speed-up the latency fit predicts for
# the fastest allowed student: the planner of a speedup target verifies its pick by
# timing and needs a margin (speed_plan.MARGIN); a candidate asked for more than any
# shape measures fails target_unreachable and tells the sweep nothing.
HI_OF_FASTEST = 0.9
# No sweep plans beyond this speed-up: past it students of every teacher we measured
# kept too little to be worth a candidate.
MAX_HI = 12.0


def axis_for(fastest: float) -> tuple[float, float]:
    """The speed-ups the candidates are spread over, lo to hi, from the fit's fastest."""
    lo = DEFAULT_LO
    hi = min(MAX_HI, max(lo, fastest * HI_OF_FASTEST))
    return lo, round(hi, DECIMALS)


def first_round(
    *, lo: float, hi: float, budget: int, parallel: int, steps: Sequence[float] = ()
) -> list[Candidate]:
    """``min(parallel, budget)`` candidates splitting the axis from ``lo`` to ``hi`` into
    equal parts (one alone in the middle): evenly by layer count where ``steps`` (each
    layer count's fastest speed-up, app/sweeps/axis.py) are known, else geometrically.
    The ends themselves are tried later, and only when the results point at them."""
    _check_axis(lo, hi)
    n = min(parallel, budget)
    if n < 1:
        raise ValueError("a sweep needs a budget and a worker of one at least")
    if hi / lo <= 1 + 1e-9:
        return [Candidate(0, _round(hi, lo, hi))]
    points = SpeedAxis(lo, hi, tuple(steps)).between(lo, hi, n + 1)
    return _numbered(points, start=0, lo=lo, hi=hi, tried=())


def next_round(
    *,
    goal: Goal,
    results: Sequence[CandidateResult],
    budget: int,
    parallel: int,
    lo: float,
    hi: float,
    steps: Sequence[float] = (),
    ratio: float = BRACKET_RATIO,
) -> list[Candidate]:
    """The next round's candidates, once every child so far has ended (``results``);
    empty when the sweep is done: budget spent, or the search settled (bracket narrower
    than ``ratio``, or an end of the axis settles it) and no candidate it hinges on is
    left to train again (repeats.py). ``steps`` as for first_round."""
    _check_axis(lo, hi)
    left = budget - len(results)
    if left < 1 or not results:
        return []
    start = max(r.index for r in results) + 1
    room = min(parallel, left)
    # A near miss at the bracket's top is trained again first (repeats.py): the rest of
    # the round splits the bracket, which a second training may move.
    again = repeats.to_repeat(goal, results, start=start, room=1, pick_too=False)
    points: list[float] | None = []
    if room > len(again):
        points = _search(
            goal=goal,
            results=results,
            left=left - len(again),
            parallel=room - len(again),
            lo=lo,
            hi=hi,
            steps=steps,
            ratio=ratio,
        )
    if points is None:
        return repeats.to_repeat(goal, results, start=start, room=room)
    tried = [r.speedup_target for r in results]
    return again + _numbered(points, start=start + len(again), lo=lo, hi=hi, tried=tried)


def _search(
    *,
    goal: Goal,
    results: Sequence[CandidateResult],
    left: int,
    parallel: int,
    lo: float,
    hi: float,
    steps: Sequence[float],
    ratio: float,
) -> list[float] | None:
    """The next round's speed-ups inside the bracket, or None once the search is
    settled. Several trainings of one target count as one, their mean retention."""
    tried = [r.speedup_target for r in results]
    results = repeats.merged(results)
    # A speed-up no shape reached on the workers ends the axis there: the search goes on
    # below it instead of ending with the budget unspent. Unless a candidate asked for as
    # much or more succeeded: then the timing that refused it was wrong (its fit taken
    # while another candidate trained on the same cores put every student slower than
    # the teacher, seen on 2 cores), and the failure says nothing about the axis.
    reached = max((r.speedup_target for r in results if r.ok), default=0.0)
    hi = min(
        [hi, *(r.speedup_target for r in results if r.unreachable and r.speedup_target > reached)]
    )
    if hi <= lo:
        return None
    bracket = _bracket(goal, results, lo=lo, hi=hi)
    if bracket is None:
        return None
    a, b, untried_end = bracket
    if b / a > ratio:
        # No more points than it takes to get every part of the bracket under the ratio.
        needed = max(1, math.ceil(math.log(b / a) / math.log(ratio)) - 1)
        k = min(parallel, left, needed)
        axis = SpeedAxis(lo, hi, tuple(steps))
        # Every candidate so far on one side of the goal: the end of the axis on the
        # other side may settle the sweep (1.3x misses: nothing will meet the floor;
        # the fastest planned meets it: nothing faster to look for). A round of two or
        # more spends one point on it; bisection keeps its one point inside.
        ends = [e for e in (a, b) if e in (_round(lo, lo, hi), _round(hi, lo, hi))]
        ends = [e for e in ends if e not in {_round(s, lo, hi) for s in tried}][: k - 1]
        points = ends + _sections(a, b, k - len(ends), tried=tried, axis=axis)
    elif untried_end is not None:
        # Narrow, but nothing has met the goal yet: the end of the axis next to the
        # bracket may, and is the one point left to try before saying none did.
        points = [untried_end]
    else:
        return None
    fresh = {_round(s, lo, hi) for s in points} - {_round(s, lo, hi) for s in tried}
    return points if fresh else None


def _sections(
    a: float, b: float, k: int, *, tried: Sequence[float], axis: SpeedAxis
) -> list[float]:
    """k points splitting a..b into k+1 equal parts of the axis; where a failed
    candidate left some of them tried (a failure does not move the bracket), the untried
    points of a finer split nearest the bracket's middle instead, so the budget left is
    spent inside the bracket rather than ending the sweep."""
    lo, hi = axis.lo, axis.hi
    seen = {_round(s, lo, hi) for s in tried}
    even = axis.between(a, b, k + 1)
    if not seen & {_round(s, lo, hi) for s in even}:
        return even
    middle = (axis.position(a) + axis.position(b)) / 2
    for parts in range(k + 2, k + 18):
        finer = axis.between(a, b, parts)
        fresh = sorted(
            {_round(s, lo, hi) for s in finer} - seen - {_round(a, lo, hi), _round(b, lo, hi)},
            key=lambda s: abs(axis.position(s) - middle),
        )
        if len(fresh) >= k:
            return sorted(fresh[:k])
    return even


def _bracket(
    goal: Goal, results: Sequence[CandidateResult], *, lo: float, hi: float
) -> tuple[float, float, float | None] | None:
    """The interval of speed-up targets left to search (each end tried, or an end of
    the axis), with the end of the axis still to try when no candidate met the goal
    (else None); or None when the results settle the answer."""
    known = [r for r in results if r.ok]
    good = [r.speedup_target for r in known if goal.met_by(r)]
    bad = [r.speedup_target for r in known if not goal.met_by(r)]
    tried = {r.speedup_target for r in results}
    lo, hi = _round(lo, lo, hi), _round(hi, lo, hi)
    if goal.kind == MIN_RETENTION:
        # Good on the slow side: the fastest good, and the slowest bad above it. A good
        # one at hi leaves nothing to search (nothing faster is planned).
        if not good and lo in bad:
            return None  # the slowest student worth training misses the floor
        a = max(good) if good else lo
        above = [s for s in bad if s > a]
        b = min(above) if above else hi
        end = lo if not good and lo not in tried else None
    else:
        # Good on the fast side: the slowest good, and the fastest bad below it. A good
        # one at lo leaves nothing to search (it is the least compressed worth training).
        if not good and hi in bad:
            return None  # even the fastest student planned is too slow
        b = min(good) if good else hi
        below = [s for s in bad if s < b]
        a = max(below) if below else lo
        end = hi if not good and hi not in tried else None
    return (a, b, end) if b > a else None


def _numbered(
    points: Sequence[float], *, start: int, lo: float, hi: float, tried: Sequence[float]
) -> list[Candidate]:
    """Candidates for ``points``, rounded, each speed-up once and none tried before."""
    seen = {_round(s, lo, hi) for s in tried}
    out: list[Candidate] = []
    for point in points:
        s = _round(point, lo, hi)
        if s in seen:
            continue
        seen.add(s)
        out.append(Candidate(start + len(out), s))
    return out


def _round(s: float, lo: float, hi: float) -> float:
    return min(max(round(s, DECIMALS), lo), hi)


def _check_axis(lo: float, hi: float) -> None:
    if not (lo > 1 and math.isfinite(hi)):
        raise ValueError(f"a sweep's speed axis starts above 1x and ends finite; got {lo}..{hi}")


def pareto_front(results: Sequence[CandidateResult]) -> list[int]:
    """Indices of the succeeded candidates no other beats on both retention (higher)
    and speed-up (higher), fastest first. Equal candidates are both on the front.

    Speed-up, not latency: each speed-up is the student over a teacher timed in the same
    pass, so it still compares across candidates whose own jobs timed them under
    different loads (the answer step's pass is skipped: workers/sweep_retime.py). Where
    every candidate was timed in one pass, with one teacher, the two orders are the
    same."""
    view = repeats.merged(results)
    points = [r for r in view if r.ok and r.retention is not None and r.speedup is not None]

    def dominated(r: CandidateResult) -> bool:
        return any(
            o.retention >= r.retention  # type: ignore[operator]
            and o.speedup >= r.speedup  # type: ignore[operator]
            and (o.retention > r.retention or o.speedup > r.speedup)  # type: ignore[operator]
            for o in points
        )

    front = [r for r in points if not dominated(r)]
    return [r.index for r in sorted(front, key=_fastest)]


def pick(goal: Goal, results: Sequence[CandidateResult]) -> Answer:
    """The student that answers ``goal``: for min_retention the fastest (highest
    speed-up, as in pareto_front) that keeps the floor; for max_latency_ms the most
    accurate (highest retention) that fits, a budget in milliseconds read against the
    latencies. When none does, the best found (the highest retention, or the lowest
    latency), with ``met`` False and a message that says so."""
    front = pareto_front(results)
    tried = f"{len(results)} candidate{'s' if len(results) != 1 else ''}"
    all_failed = f"All {len(results)} candidates failed; there is no student to return."
    results = repeats.merged(results)  # a target trained twice: its mean retention
    done = [r for r in results if r.ok]
    if not done:
        return Answer(
            None,
            False,
            all_failed,
            front,
        )
    met = [r for r in done if goal.met_by(r)]
    by_latency = _key(lambda r: (r.latency_ms, None if r.retention is None else -r.retention))
    by_accuracy = _key(lambda r: (None if r.retention is None else -r.retention, r.latency_ms))
    if goal.kind == MIN_RETENTION:
        floor = f"{goal.value:.2%} of the teacher's score"
        if met:
            best = min(met, key=_fastest)
            return Answer(
                best.index,
                True,
                f"The fastest of {tried} that keeps at least {floor}: {describe(best)}.",
                front,
            )
        best = min(done, key=by_accuracy)
        return Answer(
            best.index,
            False,
            f"None of {tried} kept {floor}; returned the one that kept the most: "
            f"{describe(best)}. Lower target.min_retention, train longer "
            "(training.epochs), or allow slower students.",
            front,
        )
    limit = f"{goal.value:g} ms"
    if met:
        best = min(met, key=by_accuracy)
        return Answer(
            best.index,
            True,
            f"The most accurate of {tried} that answers within {limit}: {describe(best)}.",
            front,
        )
    best = min(done, key=by_latency)
    return Answer(
        best.index,
        False,
        f"None of {tried} answered within {limit}; returned the fastest: "
        f"{describe(best)}. Raise target.max_latency_ms, lower the batch size or "
        "sequence length, or try another runtime (onnxruntime-int8 on CPU).",
        front,
    )


def _key(
    numbers: Callable[[CandidateResult], tuple[float | None, ...]],
) -> Callable[[CandidateResult], tuple[float, ...]]:
    # Missing numbers sort last: a candidate without a timing is neither fastest nor best.
    def key(r: CandidateResult) -> tuple[float, ...]:
        return (*(math.inf if v is None else v for v in numbers(r)), r.index)

    return key


def _fastest(r: CandidateResult) -> tuple[float, ...]:
    # The highest speed-up first; then the more accurate, the lower latency.
    return _key(
        lambda r: (
            None if r.speedup is None else -r.speedup,
            None if r.retention is None else -r.retention,
            r.latency_ms,
        )
    )(r)


def describe(r: CandidateResult) -> str:
    """One candidate in a sentence: what it was asked and what it measured."""
    parts = [f"candidate {r.index} (speedup target {r.speedup_target:g}x"]
    if r.speedup is not None:
        parts.append(f", measured {r.speedup:.2f}x")
    if r.retention is not None and len(r.retentions) > 1:
        each = " and ".join(f"{v:.2%}" for v in r.retentions)
        parts.append(f", {r.retention:.2%} retention over {len(r.retentions)} trainings: {each}")
    elif r.retention is not None:
        parts.append(f", {r.retention:.2%} retention")
    if r.latency_ms is not None:
        parts.append(f", {r.latency_ms:.2f} ms")
    return "".join(parts) + ")"
