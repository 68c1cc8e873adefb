"""Columns, the goal check, the Pareto check and the markdown table of
bench/conll2003.py's results: one row per (method, runtime) (bench/pareto.py), speed-ups
and retention against the teacher in PyTorch fp32."""

from __future__ import annotations

from typing import Any

from bench.conll2003_data import TYPES
from bench.pareto import latency_noise, ran, runtime_of
from bench.tables import cell, markdown_table

# Issue #4's goal: at a 2x CPU batch-1 speed-up, at least 98% of the teacher's entity F1.
GOAL_SPEEDUP = 2.0
GOAL_RETENTION = 0.98

COLUMNS = (
    "method",
    "target",
    "runtime",
    "layers_x_ffn",
    "f1",
    *(f"f1_{t}" for t in TYPES),
    "precision",
    "recall",
    "retention",
    "num_parameters",
    "size_bytes",
    "latency_ms_cpu_bs1",
    "latency_ms_cpu_bs32",
    "speedup_cpu_bs1",
    "speedup_cpu_bs32",
    "speedup_same_runtime_bs1",
    "wall_s",
)
SCORES = ("f1", "precision", "recall", "retention", *(f"f1_{t}" for t in TYPES))


def with_types(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its per-type F1 as columns of their own."""
    if "skipped" in row:
        return row
    return {**row, **{f"f1_{t}": row["per_type"][t]["f1"] for t in TYPES}}


def _at(row: dict[str, Any]) -> str:
    return (
        f"{row['method']} [{runtime_of(row)}]: {row['speedup_cpu_bs1']:.2f}x at bs1, "
        f"{row['retention'] * 100:.2f}% of the teacher's entity F1"
    )


def goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Does a modelpress row reach >= 2x CPU bs1 speed-up with >= 98% retention? The
    margin is that row's retention minus 98%, in percentage points (the best such row
    when one passes; the most retentive row at >= 2x otherwise)."""
    # Retention is None only when the teacher scored 0 (a smoke run): count it as 0.
    rows = [{**r, "retention": r.get("retention") or 0.0} for r in rows]
    ours = ran(rows, "modelpress")
    fast = [r for r in ours if r["speedup_cpu_bs1"] >= GOAL_SPEEDUP]
    per_row = [
        {
            "method": r["method"],
            "runtime": runtime_of(r),
            "speedup_cpu_bs1": r["speedup_cpu_bs1"],
            "retention": r["retention"],
            "fast_enough": r["speedup_cpu_bs1"] >= GOAL_SPEEDUP,
            "retention_margin_points": (r["retention"] - GOAL_RETENTION) * 100,
        }
        for r in ran(rows, "")
    ]
    result: dict[str, Any] = {
        "needs": f">= {GOAL_SPEEDUP:g}x CPU bs1 speed-up with >= {GOAL_RETENTION:.0%} of the "
        "teacher's entity F1 (a modelpress row)",
        "rows": per_row,
    }
    if fast:
        best = max(fast, key=lambda r: r["retention"])
        margin = (best["retention"] - GOAL_RETENTION) * 100
        passed = margin >= 0
        result.update(
            passed=passed,
            row=best["method"],
            retention_margin_points=margin,
            says=f"{'PASS' if passed else 'FAIL'}: {_at(best)} "
            f"({margin:+.2f} points against {GOAL_RETENTION:.0%})",
        )
    else:
        fastest = max(ours, key=lambda r: r["speedup_cpu_bs1"], default=None)
        result.update(passed=False, row=None, retention_margin_points=None)
        result["says"] = (
            "FAIL: no modelpress row ran"
            if fastest is None
            else f"FAIL: no modelpress row reaches {GOAL_SPEEDUP:g}x at bs1 (fastest: "
            f"{_at(fastest)}; {GOAL_SPEEDUP - fastest['speedup_cpu_bs1']:.2f}x short)"
        )
    return result


def _cell(row: dict[str, Any], column: str) -> str:
    if column == "layers_x_ffn":
        return f"{row['num_layers']} x {row['intermediate_size']}"
    if column == "runtime":
        one_liner = row.get("quantization") == "one-liner"
        return runtime_of(row) + (" (quantize_dynamic defaults)" if one_liner else "")
    return cell(row.get(column), column, scores=SCORES)


def table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(rows, COLUMNS, _cell)


def markdown(result: dict[str, Any]) -> str:
    m, t, setup = result["machine"], result["teacher"], result["setup"]
    head = [
        f"# CoNLL-2003 NER: modelpress against a DistilBERT-style student "
        f"({result['mode']}, {result['date']})",
        "",
    ]
    if result["mode"] == "smoke":
        head += ["**Smoke run: checks the plumbing; its numbers mean nothing.**", ""]
    head += [
        f"- machine: {m['cpu']} ({m['cores']} cores, {m['threads']} threads timed)"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
        f"- torch {m['torch']}, transformers {m['transformers']}, Python {m['python']}"
        + (f", onnxruntime {m['onnxruntime']}" if m.get("onnxruntime") else ""),
        f"- data: {setup['data']}",
        f"- evaluation: {setup['evaluation']}",
        f"- budget: {setup['budget']}",
        f"- teacher: {setup['teacher']}; test entity F1 {t['f1']:.4f} (precision "
        f"{t['precision']:.4f}, recall {t['recall']:.4f}), CPU latency "
        f"{t['latency_ms_cpu_bs1']:.2f} ms (bs1) / {t['latency_ms_cpu_bs32']:.1f} ms (bs32), "
        f"{t['size_bytes']:,} bytes; fine-tuned in {t['finetune_wall_s']} s"
        + (" (cached)" if t.get("finetune_cached") else ""),
        f"- latency: {setup['latency']}",
        *([f"- runtimes: {setup['runtimes']}"] if setup.get("runtimes") else []),
        "- wall_s: the row's whole run (modelpress: all of compress(), with its own "
        "evaluation and export; peer: load, train, save); teacher: its fine-tuning",
        "",
    ]
    g = result["goal"]
    teacher_rows = [{**r, "wall_s": t.get("finetune_wall_s")} for r in result["teacher_rows"]]
    lines = [*head, table([*teacher_rows, *result["rows"]]), "", "## Goal", ""]
    lines += [f"- needs {g['needs']}", f"- **{g['says']}**"]
    for r in g["rows"]:
        lines.append(
            f"  - {r['method']} [{r.get('runtime', 'pytorch')}]: "
            f"{r['speedup_cpu_bs1']:.2f}x, retention "
            f"{r['retention'] * 100:.2f}% ({r['retention_margin_points']:+.2f} points)"
            + ("" if r["fast_enough"] else f", below {GOAL_SPEEDUP:g}x")
        )
    if "pareto" in result:
        lines += [
            "",
            "## Pareto check (bs1 latency, size_bytes, entity F1)",
            "",
            f"At least as fast: bs1 latency at most the peer's plus "
            f"{latency_noise(result['rows']):.1%} (the largest spread between rows of one "
            "shape, runtime and quantization in this pass); at least as small: size_bytes.",
            "",
        ]
        for c in result["pareto"]:
            lines.append(f"- {c['peer']} [{c['runtime']}]: {c['says']}")
    lines += ["", f"Total wall time {result['total_wall_s']} s.", ""]
    return "\n".join(lines)
