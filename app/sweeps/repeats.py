"""Candidates trained again on another student seed, where one training cannot tell
which side of the floor they fall (docs/sweeps.md, "Repeats near the floor").

A ``min_retention`` sweep's answer hinges on two candidates: the fastest that kept the
floor (the pick) and the slowest faster one that missed it (the bracket's upper end,
what the pick could have been). On SST-2 one training seed moves a student's retention
by about a point (three seeds of the same target: 99.5, 98.8 and 98.9%; of sparsity
0.5: 1.6-1.9 points apart), and the sweeps of 2026-12-07 were decided inside that:
3 x 1008 missed 0.99 by one dev sentence where the same target had kept 99.45% on
another seed. So each of those two is trained again on the next student seed when it
lies within ``MARGIN`` of the floor, and the sweep decides on the mean of the two
trainings:

- the near miss as soon as it is the bracket's upper end, as the first point of the
  next round (the others split the bracket): whether it holds the floor says on which
  side of it the rest of the budget belongs, and splitting a bracket whose upper end
  is wrong spends candidates below the answer (a 0.99 sweep of 2026-12-08, before
  this rule, missed by 0.1 point at 2.08x in its first round and started its second
  at 1.3x and 1.75x, the rest of its budget below that miss);
- the pick once the search has settled (the bracket narrow, or an end of the axis
  decides it): until then a faster candidate usually takes its place.

A near miss that holds the floor on average moves the bracket up, a pick that does not
moves it down. Both sides are repeated, not only the misses, so the second seed does not
only ever help.

The model a repeated target answers with is its more accurate training (a team would
ship the better of two trainings of one shape); its own numbers stay in the report
beside the mean the decision used. ``max_latency_ms`` sweeps repeat nothing: latency
does not depend on the seed, and the answer step times every candidate again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from statistics import fmean

from app.sweeps.candidates import MIN_RETENTION, Candidate, CandidateResult, Goal

# A retention within this of the floor is inside one training seed's noise on SST-2
# (about one point, above): one more training before the sweep answers on it.
MARGIN = 0.01
# Trainings of one target at most: a second tells a near miss from a miss; a third
# would buy less than a point elsewhere on the axis.
MAX_TRAININGS = 2


def merged(results: Sequence[CandidateResult]) -> list[CandidateResult]:
    """One result per speed-up target: a target trained more than once as its more
    accurate training (index, shape, speed) with the mean retention and score of its
    trainings (``trainings`` their indices, ``retentions`` theirs); a failed training
    is left out where another of its target succeeded."""
    by_target: dict[float, list[CandidateResult]] = {}
    for r in results:
        by_target.setdefault(r.speedup_target, []).append(r)
    out = []
    for group in by_target.values():
        ok = [r for r in group if r.ok and r.retention is not None]
        if len(ok) < 2:
            # One training that counts (or none: the first failure stands for them).
            out.append(ok[0] if ok else group[0])
            continue
        best = max(ok, key=lambda r: (r.retention, -r.index))
        scores = [r.score for r in ok if r.score is not None]
        out.append(
            dataclasses.replace(
                best,
                retention=fmean(r.retention for r in ok),  # type: ignore[misc]
                score=fmean(scores) if len(scores) == len(ok) else best.score,
                trainings=tuple(sorted(r.index for r in ok)),
                retentions=tuple(r.retention for r in sorted(ok, key=lambda r: r.index)),  # type: ignore[misc]
            )
        )
    return sorted(out, key=lambda r: r.index)


def to_repeat(
    goal: Goal,
    results: Sequence[CandidateResult],
    *,
    start: int,
    room: int,
    pick_too: bool = True,
) -> list[Candidate]:
    """The candidates the answer hinges on, trained once and within ``MARGIN`` of the
    floor, again on the next student seed: the near miss first (it can only raise the
    answer), then the pick unless ``pick_too`` is False; at most ``room``. ``results``
    unmerged."""
    if goal.kind != MIN_RETENTION or room < 1:
        return []
    view = merged(results)
    known = [r for r in view if r.ok and r.retention is not None]
    good = [r for r in known if goal.met_by(r)]
    pick = max(good, key=lambda r: r.speedup_target, default=None)
    # As the bracket reads them: by the speed-up each was asked for.
    above = pick.speedup_target if pick is not None else 0.0
    faster_misses = [r for r in known if not goal.met_by(r) and r.speedup_target > above]
    near_miss = min(faster_misses, key=lambda r: r.speedup_target, default=None)
    trainings = _trainings(results)
    out: list[Candidate] = []
    for r in (near_miss, pick) if pick_too else (near_miss,):
        if r is None or len(out) >= room:
            continue
        if trainings[r.speedup_target] >= MAX_TRAININGS:
            continue
        if abs(r.retention - goal.value) > MARGIN:  # type: ignore[operator]
            continue
        out.append(
            Candidate(start + len(out), r.speedup_target, repeat=trainings[r.speedup_target])
        )
    return out


def _trainings(results: Sequence[CandidateResult]) -> dict[float, int]:
    """Trainings started per target, failed ones included (each spent a candidate)."""
    count: dict[float, int] = {}
    for r in results:
        count[r.speedup_target] = count.get(r.speedup_target, 0) + 1
    return count
