"""The formats plot: quality against batch-1 CPU latency for the teacher and the student
in each runtime the job timed (formats.py), so a reader sees the runtime's share and the
compression's share of the speed-up at a glance. Drawn like plots.py: object API, no
pyplot, and only when the report has ONNX rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from app.jobspec import vocabulary
from workers.engine.plots import DPI, METRIC_LABELS, STUDENT_COLOR, TEACHER_COLOR, _save

FORMATS_PNG = "formats.png"
TITLE = "Formats: quality against latency"
# One marker per runtime, in the vocabulary's order (PyTorch, ONNX Runtime, int8).
MARKERS = dict(zip(vocabulary.SPEEDUP_RUNTIMES, "osD", strict=True))


def plot_formats(metrics: Mapping[str, Any], path: Path, main_metric: str) -> Path | None:
    """None (no file) when only PyTorch was timed: the comparison plot says it all."""
    teacher = metrics.get("teacher_runtimes") or {}
    if len(teacher) < 2:
        return None
    student = {
        row["runtime"]: row
        for row in (metrics.get("formats") or {}).values()
        if isinstance(row, Mapping) and "runtime" in row
    }
    pytorch_student = metrics.get("student")
    if "pytorch" not in student and isinstance(pytorch_student, Mapping):
        student["pytorch"] = pytorch_student
    figure = Figure(figsize=(6.4, 4.2), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    for role, rows, color in (
        ("teacher", teacher, TEACHER_COLOR),
        ("student", student, STUDENT_COLOR),
    ):
        for runtime, row in rows.items():
            x, y = row.get("latency_ms_cpu_bs1"), row.get(main_metric)
            if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
                continue
            axes.scatter(
                [x],
                [100 * y],
                color=color,
                marker=MARKERS.get(runtime, "o"),
                s=60,
                label=f"{role}, {runtime}",
            )
    axes.set_xscale("log")
    axes.set_xlabel(f"CPU latency, batch 1, ms ({metrics.get('latency_threads', '?')} threads)")
    axes.set_ylabel(f"{METRIC_LABELS.get(main_metric, main_metric)} (%)")
    axes.set_title(TITLE)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)
