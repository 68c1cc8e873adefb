"""The student's shape for a ``speedup`` target, planned against measured latency.

A ``params_ratio`` plan goes width before depth (plan.py), which keeps accuracy per
parameter but not speed: at batch 1 on a CPU every layer costs a fixed overhead besides
its matmuls, so four narrow layers can be slower than three wide ones of the same size.
A team that asks for "2x faster" wants the most capable student that is 2x faster on
the hardware the report measures, so this planner works from latency, not parameters:

1. **Measure** a handful of shapes on this machine (random weights: latency does not
   depend on their values), interleaved with the teacher's shape, at batch 1 and the
   run's sequence length, as the report will (``speed_target.py``).
2. **Fit** ``ms = fixed + k · (per_layer + per_flop · layer_flops)``: a fixed cost
   (embeddings, head, Python), a per-layer overhead and a cost per FLOP of each layer
   (least squares). A lookup-table or linear latency predictor is how hardware-aware
   searches price candidates (HAT, nn-Meter). The fits in
   bench/results/sst2-full-cpu2.json (MiniLM-L6, 2 threads, 128 tokens): 0.78 ms fixed,
   0.37-0.43 ms per layer and about 700 ms per GFLOP-per-token of a layer, so 3 ms for a
   full layer, of which the per-layer overhead is about an eighth.
3. **Choose** among every shape ``pruning.structured`` allows (plan.shapes_allowed)
   the one with the most parameters whose predicted speed-up reaches the target with
   ``MARGIN`` to spare; ties go to more layers.
4. **Verify**: time that student's shape against the teacher's again; when it falls
   short, the prediction is scaled by what the measurement said and step 3 repeats.
5. **Climb**: a verified shape faster than needed leaves accuracy on the table (the
   fit's margin and its errors add up: 2.34x for a 2.15x target in
   bench/results/sst2-full-cpu2.json). The fit, scaled by the verified shape's own
   measurement, prices the larger shapes; the largest predicted to beat the target by
   ``CLIMB_MARGIN`` is timed and replaces it if it measures so. Misses rule out every
   shape at least as large on every axis. Steps 4 and 5 time ``MAX_TRIES`` shapes at
   most; the plan is the largest verified.

The speed-up is the CPU batch-1 figure of the report (``speedup_cpu_bs1``, the run's
``latency_threads``), whatever device trains. A target no allowed shape is predicted
to reach fails with ``target_unreachable``, saying the most it can be.

Pure Python: the API bounds a target by FLOPs (``flops_bound``) without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, astuple, dataclass, replace
from typing import Any

from app.jobspec.errors import EngineInputError
from app.jobspec.plan import Shape, TeacherSizes, shapes_allowed

# Predicted speed-up must exceed the target by this fraction: the fit's error on the
# shapes it was fitted to is a few percent, and the report's timing is another sample.
MARGIN = 0.04
# Once a shape is verified, a larger one replaces it only if it measures this much above
# the target (about one timing's spread between models of the same shape).
CLIMB_MARGIN = 0.02
# Verification timings in all, the first choice's and the climb's.
MAX_TRIES = 6
# A verification this much faster than the fit predicted is timed again (the lower
# reading stands), and no climb trusts a shape to beat the fit by more: on a busy host a
# slow teacher reading doubled a ratio (2026-12-08, a sweep's candidate: 3 x 1536
# predicted at 1.95x verified at 4.38x, 1.97x in its own report), and a climb scaled by
# such a reading chose a shape far too slow for its target.
SUSPECT_FASTER = 1.25

# Times shapes (interleaved, the teacher's among them) in milliseconds, in order.
Measure = Callable[[Sequence[Shape]], list[float]]


def layer_flops(sizes: TeacherSizes, shape: Shape, seq_len: int) -> int:
    """Forward FLOPs per token of one layer of ``shape`` (flops.py's counting: matmul
    weights twice, attention scores and weighted values 4 · seq_len · query width)."""
    hidden, ffn = shape.hidden_size, shape.intermediate_size
    query, kv = sizes.attention_widths(shape)
    weights = 2 * hidden * query + 2 * hidden * kv + (sizes.ffn_inputs + 1) * hidden * ffn
    return 2 * weights + 4 * seq_len * query


def flops_bound(sizes: TeacherSizes, structured: Collection[str], seq_len: int) -> float:
    """The teacher's layer FLOPs over the smallest allowed student's: no student can be
    faster than this (fixed costs only lower what it reaches)."""
    teacher = sizes.teacher_shape
    total = teacher.num_layers * layer_flops(sizes, teacher, seq_len)
    least = min(
        s.num_layers * layer_flops(sizes, s, seq_len) for s in shapes_allowed(sizes, structured)
    )
    return total / least


def check_speedup_bound(
    sizes: TeacherSizes,
    structured: Collection[str],
    speedup: float,
    *,
    seq_len: int,
) -> None:
    """Refuse a speed-up above what removing the allowed structures could give even if
    latency followed FLOPs alone (the engine then measures what this machine gives)."""
    bound = flops_bound(sizes, structured, seq_len)
    if speedup > bound:
        widths = "" if "ffn" in structured else "; adding 'ffn' to pruning.structured allows more"
        raise EngineInputError(
            "target_unreachable",
            f"target.speedup {speedup:g} is more than this teacher allows: removing "
            f"{sorted(structured)} cuts its layer FLOPs by {bound:.2f}x at most, and latency "
            f"falls less than FLOPs; ask for at most {bound:.2f}{widths}",
            param="target.speedup",
        )


@dataclass(frozen=True)
class LatencyFit:
    """``ms = fixed_ms + k · (layer_ms + ms_per_gflop · layer GFLOPs)``."""

    fixed_ms: float
    layer_ms: float
    ms_per_gflop: float

    def predict(self, sizes: TeacherSizes, shape: Shape, seq_len: int) -> float:
        gflops = layer_flops(sizes, shape, seq_len) / 1e9
        return self.fixed_ms + shape.num_layers * (self.layer_ms + self.ms_per_gflop * gflops)


def fit_latency(
    sizes: TeacherSizes, shapes: Sequence[Shape], ms: Sequence[float], seq_len: int
) -> LatencyFit:
    """Least squares over the measured shapes, each coefficient held at zero or more (a
    negative cost is noise: that term is dropped and the rest refitted)."""
    rows = [
        (1.0, float(s.num_layers), s.num_layers * layer_flops(sizes, s, seq_len) / 1e9)
        for s in shapes
    ]
    # Layers-only plans keep every layer's width: per-layer overhead and FLOPs are then
    # the same column, and the layer term alone carries both.
    same_width = len({layer_flops(sizes, s, seq_len) for s in shapes}) == 1
    active = [0, 1] if same_width else [0, 1, 2]
    while True:
        coef = _least_squares([[r[i] for i in active] for r in rows], list(ms))
        negative = [i for i, c in zip(active, coef, strict=True) if c < 0]
        if not negative or len(active) == 1:
            full = [0.0, 0.0, 0.0]
            for i, c in zip(active, coef, strict=True):
                full[i] = max(c, 0.0)
            return LatencyFit(*full)
        active.remove(negative[0])


def calibration_shapes(sizes: TeacherSizes, structured: Collection[str]) -> list[Shape]:
    """Shapes that pin down the fit: the teacher; one, half and all layers at full width
    and at the narrowest widths allowed."""
    allowed = shapes_allowed(sizes, structured)
    narrowest = min(allowed, key=lambda s: (s.num_layers, layer_flops(sizes, s, 1)))
    depths = sorted({1, max(1, sizes.num_layers // 2), sizes.num_layers})
    picked = [sizes.teacher_shape]
    for k in depths:
        for shape in (
            replace(sizes.teacher_shape, num_layers=k),
            replace(narrowest, num_layers=k),
        ):
            if shape not in picked:
                picked.append(shape)
    return picked


@dataclass(frozen=True)
class SpeedPlan:
    """The chosen shape and how it was chosen (for the report)."""

    shape: Shape
    target: float
    predicted_speedup: float
    measured_speedup: float
    fit: LatencyFit
    tries: int
    threads: int
    seq_len: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "shape": asdict(self.shape),
            "target_speedup": self.target,
            "predicted_speedup": round(self.predicted_speedup, 3),
            "measured_speedup": round(self.measured_speedup, 3),
            "latency_fit_ms": {k: round(v, 4) for k, v in asdict(self.fit).items()},
            "tries": self.tries,
            "threads": self.threads,
            "seq_len": self.seq_len,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeedPlan:
        return cls(
            shape=Shape(**data["shape"]),
            target=float(data["target_speedup"]),
            predicted_speedup=float(data["predicted_speedup"]),
            measured_speedup=float(data["measured_speedup"]),
            fit=LatencyFit(**data["latency_fit_ms"]),
            tries=int(data["tries"]),
            threads=int(data["threads"]),
            seq_len=int(data["seq_len"]),
        )


def predicted_speedups(
    sizes: TeacherSizes, structured: Collection[str], fit: LatencyFit, seq_len: int
) -> dict[Shape, float]:
    """Every allowed student's speed-up over the teacher, by ``fit``."""
    teacher_ms = fit.predict(sizes, sizes.teacher_shape, seq_len)
    return {
        s: teacher_ms / fit.predict(sizes, s, seq_len)
        for s in shapes_allowed(sizes, structured)
        if s != sizes.teacher_shape
    }


def plan_for_speedup(
    sizes: TeacherSizes,
    structured: Collection[str],
    speedup: float,
    *,
    measure: Measure,
    seq_len: int,
    threads: int,
) -> SpeedPlan:
    """The most parameters whose measured batch-1 speed-up reaches ``speedup`` (module
    docstring)."""
    calibration = calibration_shapes(sizes, structured)
    fit = fit_latency(sizes, calibration, measure(calibration), seq_len)
    # Priced once for all the tries.
    predicted = predicted_speedups(sizes, structured, fit, seq_len)
    fastest = max(predicted.values())
    # How much slower than predicted verification found the candidates (1: as fast).
    correction, margin = 1.0, MARGIN
    best: tuple[Shape, float, float] | None = None  # shape, predicted, measured
    missed: list[Shape] = []
    tries = 0
    while tries < MAX_TRIES:
        need = speedup * (1 + margin) * correction
        above = sizes.shape_params(best[0]) if best is not None else -1
        fitting = [
            s
            for s, speed in predicted.items()
            if speed >= need
            and sizes.shape_params(s) > above
            and not any(_no_smaller(s, m) for m in missed)
        ]
        if not fitting:
            break
        chosen = max(fitting, key=lambda s: (sizes.shape_params(s), s.num_layers))
        tries += 1
        teacher_now, chosen_now = measure([sizes.teacher_shape, chosen])
        measured = teacher_now / chosen_now
        if measured > predicted[chosen] * SUSPECT_FASTER:
            teacher_again, chosen_again = measure([sizes.teacher_shape, chosen])
            measured = min(measured, teacher_again / chosen_again)
        # A shape that replaces one already verified must beat the target by one timing's
        # noise: the report's own timing is another sample.
        if measured >= speedup * (1 + (CLIMB_MARGIN if best is not None else 0.0)):
            best = (chosen, predicted[chosen], measured)
            # Verified with room to spare: the fit, scaled by what this shape measured,
            # prices the larger shapes next to it; climb with the smaller margin.
            correction = max(predicted[chosen] / measured, 1 / SUSPECT_FASTER)
            margin = CLIMB_MARGIN
        else:
            missed.append(chosen)
            # The worst optimism seen so far, and always a step more, so a miss caused by
            # noise does not choose the same shape again.
            correction = max(correction * (1 + MARGIN / 2), predicted[chosen] / measured)
    if best is not None:
        shape, guess, measured = best
        return SpeedPlan(shape, speedup, guess, measured, fit, tries, threads, seq_len)
    raise EngineInputError(
        "target_unreachable",
        f"target.speedup {speedup:g} is more than this machine gives: at batch 1, "
        f"{seq_len} tokens and {threads} CPU thread(s), the fastest student that "
        f"pruning.structured {sorted(structured)} allows is predicted at "
        f"{fastest / correction:.2f}x the teacher; ask for less"
        + ("" if "ffn" in structured else ", or add 'ffn' to pruning.structured"),
    )


def _no_smaller(shape: Shape, other: Shape) -> bool:
    """``shape`` is at least ``other`` on every axis, so at least as slow."""
    return all(a >= b for a, b in zip(astuple(shape), astuple(other), strict=True))


def _least_squares(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve the normal equations AᵀA x = Aᵀb by Gaussian elimination (a few unknowns)."""
    n = len(a[0])
    ata = [[sum(r[i] * r[j] for r in a) for j in range(n)] for i in range(n)]
    atb = [sum(r[i] * y for r, y in zip(a, b, strict=True)) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(ata[r][col]))
        ata[col], ata[pivot] = ata[pivot], ata[col]
        atb[col], atb[pivot] = atb[pivot], atb[col]
        if abs(ata[col][col]) < 1e-18:
            raise ValueError("the calibration shapes do not determine the latency fit")
        for r in range(col + 1, n):
            factor = ata[r][col] / ata[col][col]
            for c in range(col, n):
                ata[r][c] -= factor * ata[col][c]
            atb[r] -= factor * atb[col]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (atb[i] - sum(ata[i][j] * x[j] for j in range(i + 1, n))) / ata[i][i]
    return x
