"""PNG plots for the export: the training curves, and teacher vs student.

Drawn with matplotlib's object API (a ``Figure`` on an Agg canvas), never pyplot: pyplot
keeps global figure state, which a worker process running job after job would leak,
and may pick a display backend that a headless worker does not have.

Both functions take the plain dicts that go into ``report.json`` and tolerate what a
run may lack (a stage that did not run, a metric that was not measured): they draw what
is there and say "n/a" for the rest, so a plot never fails an otherwise good export.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TRAINING_CURVES_PNG = "training_curves.png"
COMPARISON_PNG = "teacher_vs_student.png"
# Alt text, for the model card.
PLOT_TITLES = {
    TRAINING_CURVES_PNG: "Training curves",
    COMPARISON_PNG: "Teacher vs student",
    # format_plot.py's, drawn when ONNX formats were timed.
    "formats.png": "Formats: quality against latency",
}

# The quality metric the comparison leads with, by task, for a report that does not
# name its ``main_metric``; token classification is judged by entity-level F1.
MAIN_METRIC_BY_TASK = {"token-classification": "f1"}
METRIC_LABELS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "f1": "F1"}
STAGE_TITLES = {"teacher_finetune": "Teacher fine-tuning", "distilling": "Distillation"}

DPI = 120
TEACHER_COLOR = "#e0862c"
STUDENT_COLOR = "#2a7ab9"


def plot_training_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]] | None] | None, path: Path
) -> Path:
    """Loss against step, one panel per stage that recorded points.

    ``curves`` maps a stage name to ``[{"step", "epoch", "loss"}, ...]`` or None (a stage
    that did not run). Stages get their own panels because their losses are different
    quantities (cross-entropy for the teacher, the distillation mix for the student).
    """
    stages = [(name, _curve_points(points)) for name, points in (curves or {}).items()]
    stages = [(name, points) for name, points in stages if points]
    figure = Figure(figsize=(5.0 * max(1, len(stages)), 3.6), dpi=DPI, layout="constrained")
    if not stages:
        _no_data(figure.add_subplot(), "no training curve was recorded")
    for index, (name, points) in enumerate(stages, start=1):
        axes = figure.add_subplot(1, len(stages), index)
        steps = [step for step, _, _ in points]
        axes.plot(
            steps,
            [loss for _, _, loss in points],
            color=STUDENT_COLOR if name == "distilling" else TEACHER_COLOR,
            marker="o" if len(points) <= 40 else None,
            markersize=3,
        )
        # Points logged at a whole epoch close that epoch; a faint line marks each
        # boundary but the last, so a per-epoch jump in the loss is easy to place.
        for step, epoch, _ in points[:-1]:
            if epoch is not None and epoch > 0 and float(epoch).is_integer():
                axes.axvline(step, color="#cccccc", linestyle=":", linewidth=1)
        axes.set_title(STAGE_TITLES.get(name, name.replace("_", " ").capitalize()))
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_comparison(
    metrics: Mapping[str, Any] | None, path: Path, main_metric: str = "accuracy"
) -> Path:
    """Teacher vs student: ``main_metric``, parameters, size on disk, CPU latency.

    ``metrics`` is the report's ``metrics``: ``teacher`` and ``student`` dicts with
    ``main_metric``, ``num_parameters``, ``size_bytes``, ``latency_ms_cpu_bs1`` and
    ``latency_ms_cpu_bs32``, plus ``latency_threads``.
    """
    metrics = metrics or {}
    teacher = metrics.get("teacher") or {}
    student = metrics.get("student") or {}
    figure = Figure(figsize=(15.0, 3.8), dpi=DPI, layout="constrained")
    panels = figure.subplots(1, 4)

    label = METRIC_LABELS.get(main_metric, main_metric)
    t, s = _number(teacher.get(main_metric)), _number(student.get(main_metric))
    percent = all(v is None or 0.0 <= v <= 1.0 for v in (t, s))
    scale, unit = (100.0, "%") if percent else (1.0, "")
    retention = f"retention {100 * s / t:.1f}%" if t and s is not None else None
    _pair_panel(
        panels[0], label, t, s, scale, unit, note=retention, fixed_top=100.0 if percent else 0.0
    )

    t, s = _number(teacher.get("num_parameters")), _number(student.get("num_parameters"))
    scale, unit = _count_unit(t, s)
    _pair_panel(panels[1], "Parameters", t, s, scale, unit, note=_ratio(t, s, "fewer"))

    t, s = _number(teacher.get("size_bytes")), _number(student.get("size_bytes"))
    scale, unit = _bytes_unit(t, s)
    _pair_panel(panels[2], "Size on disk", t, s, scale, unit, note=_ratio(t, s, "smaller"))

    threads = metrics.get("latency_threads")
    _latency_panel(
        panels[3],
        f"CPU latency ({threads} thread{'s' if threads != 1 else ''})"
        if threads
        else "CPU latency",
        teacher,
        student,
    )
    return _save(figure, path)


def write_plots(output_dir: Path, report: Mapping[str, Any]) -> list[Path]:
    """Both PNGs beside ``report.json``, from the report's own content."""
    metrics = report.get("metrics") or {}
    output_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_training_curves(report.get("training"), output_dir / TRAINING_CURVES_PNG),
        plot_comparison(metrics, output_dir / COMPARISON_PNG, main_metric_of(report)),
    ]


def main_metric_of(report: Mapping[str, Any]) -> str:
    """The metric the report itself names, else the usual one for its task."""
    named = (report.get("metrics") or {}).get("main_metric")
    if isinstance(named, str):
        return named
    return MAIN_METRIC_BY_TASK.get((report.get("spec") or {}).get("task"), "accuracy")


def _curve_points(
    points: Sequence[Mapping[str, Any]] | None,
) -> list[tuple[float, float | None, float]]:
    """(step, epoch, loss) for the points whose step and loss are finite numbers."""
    kept = []
    for point in points or ():
        step, loss = _number(point.get("step")), _number(point.get("loss"))
        if step is not None and loss is not None:
            kept.append((step, _number(point.get("epoch")), loss))
    return kept


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pair_panel(
    axes: Axes,
    title: str,
    teacher: float | None,
    student: float | None,
    scale: float,
    unit: str,
    *,
    note: str | None = None,
    fixed_top: float = 0.0,
) -> None:
    if teacher is None and student is None:
        _no_data(axes, f"{title}: not measured")
        return
    names = ["teacher", "student"]
    values = [teacher, student]
    heights = [0.0 if v is None else v * scale for v in values]
    bars = axes.bar(names, heights, color=[TEACHER_COLOR, STUDENT_COLOR], width=0.6)
    for bar, value in zip(bars, values, strict=True):
        text = "n/a" if value is None else _fmt(value * scale, unit)
        axes.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    top = max(max(heights), fixed_top)
    axes.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    axes.set_title(title if note is None else f"{title}\n{note}")
    if unit:
        axes.set_ylabel(unit.strip())
    axes.grid(axis="y", alpha=0.3)


def _latency_panel(
    axes: Axes, title: str, teacher: Mapping[str, Any], student: Mapping[str, Any]
) -> None:
    sizes = (1, 32)
    keys = [f"latency_ms_cpu_bs{size}" for size in sizes]
    series = {
        "teacher": [_number(teacher.get(key)) for key in keys],
        "student": [_number(student.get(key)) for key in keys],
    }
    if all(v is None for values in series.values() for v in values):
        _no_data(axes, f"{title}: not measured")
        return
    width = 0.38
    tallest = 0.0
    for offset, (name, color) in zip(
        (-width / 2, width / 2),
        (("teacher", TEACHER_COLOR), ("student", STUDENT_COLOR)),
        strict=True,
    ):
        values = series[name]
        heights = [0.0 if v is None else v for v in values]
        tallest = max(tallest, *heights)
        bars = axes.bar(
            [i + offset for i in range(len(sizes))], heights, width, color=color, label=name
        )
        for bar, value in zip(bars, values, strict=True):
            axes.annotate(
                "n/a" if value is None else _fmt(value, ""),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ticks = []
    for size, t, s in zip(sizes, series["teacher"], series["student"], strict=True):
        speedup = _ratio(t, s, "faster")
        ticks.append(f"batch {size}\n{speedup or 'speed-up n/a'}")
    axes.set_xticks(range(len(sizes)), ticks)
    axes.set_ylim(0, tallest * 1.2 if tallest > 0 else 1.0)
    axes.set_ylabel("ms")
    axes.set_title(title)
    axes.legend(loc="best", fontsize=8, frameon=False)
    axes.grid(axis="y", alpha=0.3)


def _ratio(teacher: float | None, student: float | None, word: str) -> str | None:
    if teacher is None or not student:
        return None
    return f"{teacher / student:.2f}x {word}".rstrip()


def _count_unit(*values: float | None) -> tuple[float, str]:
    largest = max((v for v in values if v is not None), default=0.0)
    for scale, unit in ((1e-9, " B"), (1e-6, " M"), (1e-3, " K")):
        if largest * scale >= 1:
            return scale, unit
    return 1.0, ""


def _bytes_unit(*values: float | None) -> tuple[float, str]:
    largest = max((v for v in values if v is not None), default=0.0)
    for scale, unit in ((1e-9, " GB"), (1e-6, " MB"), (1e-3, " KB")):
        if largest * scale >= 1:
            return scale, unit
    return 1.0, " bytes"


def _fmt(value: float, unit: str) -> str:
    digits = 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f}{unit}"


def _no_data(axes: Axes, message: str) -> None:
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#666666")


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure).print_png(str(path))
    return path
