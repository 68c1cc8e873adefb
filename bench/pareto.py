"""What every benchmark's report does with models measured in several runtimes
(bench/runtimes.py): one row per (method, runtime) with its speed-ups and retention, the
timing spread of identical shapes, and the Pareto check of the peers.

Speed-ups are given twice: against the teacher in PyTorch fp32 (``speedup_cpu_bs*``: the
reference of every bar, the model a team starts from) and against the teacher in the same
runtime (``speedup_same_runtime_bs*``: what the compression alone gave there). Retention
is against the PyTorch fp32 teacher's score.
"""

from __future__ import annotations

import statistics
from typing import Any

# Sizes this close count as the same size: one shape exported and quantized by the same
# functions differs only in the names inside its graph (a job's 3 x 1536 int8 file was
# 14 bytes larger than the DistilBERT-style peer's 17,534,779, 2026-12-07). A size
# difference that matters to a team is a layer or an FFN block, megabytes.
SIZE_SLACK = 0.001

# Keys a row carries from its training run, not from a measurement (kept on reuse).
TRAINED_KEYS = (
    "method",
    "target",
    "wall_s",
    "train_s",
    "model_dir",
    "details",
    "seed_of",
    "training_seed",
)


def ran(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The rows of methods starting with ``prefix`` that were measured."""
    return [r for r in rows if r["method"].startswith(prefix) and "skipped" not in r]


def runtime_of(row: dict[str, Any]) -> str:
    """Results written before rows had runtimes were all PyTorch."""
    return row.get("runtime") or "pytorch"


def with_columns(
    row: dict[str, Any],
    measured: dict[str, Any],
    teacher: dict[str, dict[str, Any]],
    score: str,
) -> dict[str, Any]:
    """The row in one runtime: what was measured there, retention and speed-ups against
    the teacher in PyTorch fp32, speed-ups against the teacher in the same runtime
    (``teacher``: runtime -> the teacher measured there)."""
    reference, same = teacher["pytorch"], teacher.get(measured["runtime"])
    out = {**row, **measured}
    out["retention"] = measured[score] / reference[score] if reference[score] else None
    for bs in (1, 32):
        key = f"latency_ms_cpu_bs{bs}"
        out[f"speedup_cpu_bs{bs}"] = reference[key] / measured[key]
        out[f"speedup_same_runtime_bs{bs}"] = (
            same[key] / measured[key] if same and key in same else None
        )
    return out


def runtime_rows(
    rows: list[dict[str, Any]], measured: dict[str, Any], score: str
) -> list[dict[str, Any]]:
    """Each row of ``rows`` (one per method) once per runtime it was measured in, in the
    order of ``rows``; a runtime that failed for a row is that row skipped, with why."""
    teacher = measured["teacher"]
    out = []
    for row in rows:
        if "skipped" in row:
            out.append(row)
            continue
        for runtime, found in measured.get(row["method"], {}).items():
            if "error" in found:
                out.append({**row, "runtime": runtime, "skipped": f"{runtime}: {found['error']}"})
            else:
                out.append(with_columns(row, found, teacher, score))
    return out


def latency_noise(rows: list[dict[str, Any]]) -> float:
    """The largest relative spread of bs1 latency between rows of one shape (the same
    parameter count) in one runtime and quantization in this pass: how far apart timing
    alone puts identical models."""
    groups: dict[tuple[str, Any, int], list[float]] = {}
    for row in rows:
        if "skipped" not in row:
            key = (runtime_of(row), row.get("quantization"), row["num_parameters"])
            groups.setdefault(key, []).append(row["latency_ms_cpu_bs1"])
    spreads = [max(v) / min(v) - 1.0 for v in groups.values() if len(v) > 1]
    return max(spreads, default=0.0)


def _points(score: str) -> str:
    return score.removeprefix("dev_") + " points"


def _named(row: dict[str, Any]) -> str:
    return f"{row['method']} [{runtime_of(row)}]"


def pareto(rows: list[dict[str, Any]], score: str = "dev_accuracy") -> list[dict[str, Any]]:
    """For each peer row, in each runtime it ran in: is some modelpress row, in any
    runtime, at least as fast (bs1), at least as small (``size_bytes`` of what its
    runtime loads) and better on ``score``? "As fast" allows the spread that identical
    shapes show in this pass (``latency_noise``): the same shape is the same speed, and
    timing noise must not decide; "as small" allows ``SIZE_SLACK``, for the same
    reason. When no row is, by how much the best one that is as fast and as small falls
    short, or that none is. Seed repeats (``seed_of``), ours or a peer's, are not rows of
    their own here: ``pareto_over_seeds`` reads them."""
    ours = [r for r in ran(rows, "modelpress") if "seed_of" not in r]
    peers = [r for r in ran(rows, "peer:") if "seed_of" not in r]
    return _checks(ours, peers, 1.0 + latency_noise(rows), score)


def over_seeds(rows: list[dict[str, Any]], score: str = "dev_accuracy") -> list[dict[str, Any]]:
    """One row per (method, runtime): the method's row with ``score`` the median over
    the row and its seed repeats (``seed_of``), ``latency_ms_cpu_bs1`` their median,
    ``size_bytes`` the largest, and ``seeds`` the training seeds it stands for."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "skipped" not in row:
            groups.setdefault((row.get("seed_of", row["method"]), runtime_of(row)), []).append(row)
    out = []
    for (method, _), group in groups.items():
        first = next((r for r in group if "seed_of" not in r), group[0])
        out.append(
            {
                **{k: v for k, v in first.items() if k != "seed_of"},
                "method": method,
                score: statistics.median(r[score] for r in group),
                "latency_ms_cpu_bs1": statistics.median(r["latency_ms_cpu_bs1"] for r in group),
                "size_bytes": max(r["size_bytes"] for r in group),
                "seeds": sorted(int(r.get("training_seed", 0)) for r in group),
                f"{score}_by_seed": {int(r.get("training_seed", 0)): r[score] for r in group},
            }
        )
    return out


def pareto_over_seeds(
    rows: list[dict[str, Any]], score: str = "dev_accuracy"
) -> list[dict[str, Any]]:
    """``pareto`` with each method's score the median over its training seeds, ours and
    the peers' alike (``over_seeds``): on a dev set where one sentence is 0.11 points,
    one seed of each side can decide a row that is a tie. Only our rows trained with
    every seed the peer was may decide it: a median of one seed against a median of
    three is the one-seed check again (a 2026-12-07 run read "dominated" that way, our
    seed 0 against the peer's median). Empty when no peer was trained with more than one
    seed (then it says nothing ``pareto`` does not)."""
    summary = over_seeds(rows, score)
    peers = [r for r in summary if r["method"].startswith("peer:")]
    if not any(len(r["seeds"]) > 1 for r in peers):
        return []
    ours = [r for r in summary if r["method"].startswith("modelpress")]
    slack = 1.0 + latency_noise(rows)
    seeds = {(r["method"], runtime_of(r)): r["seeds"] for r in summary}
    checks = []
    for peer in peers:
        peer_seeds = peer["seeds"]
        same = [m for m in ours if set(peer_seeds) <= set(m["seeds"])]
        if same:
            check = _checks(same, [peer], slack, score)[0]
        else:
            check = {
                "peer": peer["method"],
                "runtime": runtime_of(peer),
                "peer_score": peer[score],
                "dominated": False,
                "by": None,
                "by_runtime": None,
                "margin": None,
                "says": f"undecided: no modelpress row of this run was trained with its "
                f"seeds {peer_seeds} (--seeds, --seed-rows)",
            }
        check["peer_seeds"] = peer_seeds
        if check.get("by"):
            check["by_seeds"] = seeds[(check["by"], check["by_runtime"])]
        checks.append(check)
    return checks


def _checks(
    ours: list[dict[str, Any]], peers: list[dict[str, Any]], slack: float, score: str
) -> list[dict[str, Any]]:
    checks = []
    for peer in peers:
        fast_small = [
            m
            for m in ours
            if m["latency_ms_cpu_bs1"] <= peer["latency_ms_cpu_bs1"] * slack
            and m["size_bytes"] <= peer["size_bytes"] * (1.0 + SIZE_SLACK)
        ]
        check: dict[str, Any] = {
            "peer": peer["method"],
            "runtime": runtime_of(peer),
            "peer_score": peer[score],
        }
        if fast_small:
            best = max(fast_small, key=lambda m: m[score])
            margin = best[score] - peer[score]
            check.update(
                dominated=margin > 0,
                by=best["method"],
                by_runtime=runtime_of(best),
                margin=margin,
                says=(
                    f"dominated by {_named(best)} (+{margin * 100:.2f} {_points(score)}, "
                    f"{peer['latency_ms_cpu_bs1'] / best['latency_ms_cpu_bs1']:.2f}x as fast, "
                    f"{peer['size_bytes'] / best['size_bytes']:.2f}x as small)"
                    if margin > 0
                    else f"NOT dominated: the best modelpress row at least as fast and as "
                    f"small, {_named(best)}, is {abs(margin) * 100:.2f} {_points(score)} behind"
                ),
            )
        else:
            fastest = min(ours, key=lambda m: m["latency_ms_cpu_bs1"], default=None)
            check.update(dominated=False, by=None, by_runtime=None, margin=None)
            check["says"] = (
                "NOT dominated: no modelpress row ran"
                if fastest is None
                else "NOT dominated: no modelpress row is at least as fast (bs1) and as small "
                f"(fastest: {_named(fastest)} at {fastest['latency_ms_cpu_bs1']:.2f} ms, "
                f"{fastest['size_bytes']:,} bytes vs {peer['latency_ms_cpu_bs1']:.2f} ms, "
                f"{peer['size_bytes']:,} bytes)"
            )
        checks.append(check)
    return checks
