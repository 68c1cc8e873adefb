"""The sweep's plot: retention against latency for every candidate, the Pareto front
joined, the pick ringed and the goal drawn (object API on an Agg canvas, as
workers/engine/plots.py, for the same reasons)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SWEEP_PNG = "sweep.png"


def draw_sweep(report: dict[str, Any], path: Path) -> Path:
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = [c for c in report["candidates"] if c["ok"] and c["latency_ms"] is not None]
    rows = [c for c in rows if c["retention"] is not None]
    for c in rows:
        color = "#2b6cb0" if c["met"] else "#a0aec0"
        ax.scatter(c["latency_ms"], 100 * c["retention"], color=color, zorder=3)
        ax.annotate(
            f"#{c['index']} {c['speedup_target']:g}x",
            (c["latency_ms"], 100 * c["retention"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    front = sorted((c for c in rows if c["pareto"]), key=lambda c: c["latency_ms"])
    if len(front) > 1:
        ax.plot(
            [c["latency_ms"] for c in front],
            [100 * c["retention"] for c in front],
            color="#2b6cb0",
            linewidth=1,
            label="Pareto front",
        )
    for c in rows:
        if c["picked"]:
            ax.scatter(
                c["latency_ms"],
                100 * c["retention"],
                s=220,
                facecolors="none",
                edgecolors="#e53e3e",
                linewidths=2,
                zorder=4,
                label="picked",
            )
    goal = report["goal"]
    if goal["kind"] == "min_retention":
        ax.axhline(
            100 * goal["value"],
            color="#e53e3e",
            linestyle="--",
            linewidth=1,
            label=f"min_retention {goal['value']:g}",
        )
    else:
        ax.axvline(
            goal["value"],
            color="#e53e3e",
            linestyle="--",
            linewidth=1,
            label=f"max_latency_ms {goal['value']:g}",
        )
    ax.set_xlabel(f"Latency, ms (batch {report['batch_size']}, {report['runtime']})")
    ax.set_ylabel("Retention of the teacher's score, %")
    ax.set_title(f"Sweep: {len(report['candidates'])} candidates")
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no candidate succeeded", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    return path
