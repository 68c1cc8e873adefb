"""Where a sweep's candidates go on the speed-up axis: spread evenly over the layer
counts the axis spans, not over its log-speed-ups alone (docs/sweeps.md).

The planner answers a speed-up target with the most parameters that reach it, and more
layers with narrower FFNs hold more parameters than fewer wide ones: a target plans the
most layers whose fastest shape (narrowest FFN) reaches it. So the layer count steps down
where a target passes a layer count's fastest predicted speed-up, the ``steps`` the
parent's latency fit gives. Retention falls most where a layer goes, so the search must
see each layer count the bracket spans; but the bands are uneven in log-speed (the
one-layer band of a six-layer teacher is far wider than the five-layer one), and
geometric points on the 0.97 sweep of 2026-12-07 went from three layers straight to
one, never trying the two-layer band where the answer lay.

A position on the axis counts layer counts: each layer count's band (from the step
below it to its own) has length one, and within a band positions are geometric in the
speed-up. An axis without steps (a plan from before them, or a structure with one layer
count) is one band, and its points are geometric, as before.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.jobspec.speed_plan import MARGIN

# Speed-up targets (and steps) are rounded to this many decimals, to be read and compared.
DECIMALS = 3


def steps_of(layer_steps: Sequence[Sequence[float]]) -> list[float]:
    """The steps of the teacher step's ``layer_steps`` (``[layers, speed-up]`` pairs):
    the planner takes a shape only when its predicted speed-up beats the target by its
    margin, so a layer goes a margin below the fit's fastest."""
    return sorted(round(float(s) / (1 + MARGIN), DECIMALS) for _, s in layer_steps)


@dataclass(frozen=True)
class SpeedAxis:
    """The speed-ups ``lo`` to ``hi`` and the ``steps`` where a layer goes (ascending)."""

    lo: float
    hi: float
    steps: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(sorted(s for s in self.steps if s > 1)))

    def _knots(self) -> list[float]:
        inner = [s for s in self.steps if self.lo < s < self.hi]
        return [self.lo, *inner, self.hi]

    def _weights(self, knots: Sequence[float]) -> list[float]:
        """Each piece's length: the share of its layer count's band (in log-speed) it
        covers; one band when the steps say nothing about it."""
        out = []
        for a, b in itertools.pairwise(knots):
            below = [s for s in self.steps if s <= a]
            above = [s for s in self.steps if s >= b]
            if not above:
                out.append(1.0)
                continue
            band_lo, band_hi = (below[-1] if below else 1.0), above[0]
            out.append(math.log(b / a) / math.log(band_hi / band_lo))
        return out

    def position(self, s: float) -> float:
        """How many layer counts' bands lie between ``lo`` and ``s``."""
        knots = self._knots()
        s = min(max(s, self.lo), self.hi)
        i = min(max(bisect.bisect_right(knots, s) - 1, 0), len(knots) - 2)
        weights = self._weights(knots)
        a, b = knots[i], knots[i + 1]
        return sum(weights[:i]) + weights[i] * math.log(s / a) / math.log(b / a)

    def speedup(self, u: float) -> float:
        """The speed-up at position ``u`` (position's inverse)."""
        knots = self._knots()
        weights = self._weights(knots)
        for (a, b), w in zip(itertools.pairwise(knots), weights, strict=True):
            if u <= w or b == knots[-1]:
                share = min(max(u / w, 0.0), 1.0) if w > 0 else 0.0
                return a * (b / a) ** share
            u -= w
        return self.hi

    def between(self, a: float, b: float, parts: int) -> list[float]:
        """The ``parts - 1`` points that split ``a``..``b`` into ``parts`` equal lengths."""
        ua, ub = self.position(a), self.position(b)
        return [self.speedup(ua + (ub - ua) * i / parts) for i in range(1, parts)]
