"""The export's PNG plots, drawn from report dicts like the engine writes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from workers.engine.export import model_card
from workers.engine.plots import (
    COMPARISON_PNG,
    STUDENT_COLOR,
    TEACHER_COLOR,
    TRAINING_CURVES_PNG,
    main_metric_of,
    plot_comparison,
    plot_training_curves,
    write_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _part(accuracy: float, params: int, size: int, bs1: float, bs32: float) -> dict[str, Any]:
    return {
        "accuracy": accuracy,
        "macro_f1": accuracy - 0.01,
        "num_parameters": params,
        "non_embedding_parameters": params // 2,
        "size_bytes": size,
        "latency_ms_cpu_bs1": bs1,
        "latency_ms_cpu_bs32": bs32,
        "num_layers": 6 if params > 15_000_000 else 3,
        "intermediate_size": 1536,
    }


def _curve(n: int, start: float, steps_per_epoch: int) -> list[dict[str, float]]:
    return [
        {"step": s, "epoch": round(s / steps_per_epoch, 3), "loss": start / (1 + 0.1 * s)}
        for s in range(1, n + 1)
    ]


@pytest.fixture
def report() -> dict[str, Any]:
    teacher = _part(0.91, 22_713_216, 90_900_000, 6.1, 98.0)
    student = _part(0.89, 15_000_000, 60_100_000, 3.2, 50.5)
    return {
        "metrics": {
            "teacher": teacher,
            "student": student,
            "retention": 0.89 / 0.91,
            "compression_ratio": 22_713_216 / 15_000_000,
            "params_ratio_non_embedding": 0.5,
            "speedup_cpu_bs1": 6.1 / 3.2,
            "speedup_cpu_bs32": 98.0 / 50.5,
            "teacher_finetuned": True,
            "layer_map": [0, 2, 4],
            "pruning_plan": {"num_layers": 3, "intermediate_size": 1536, "importance": None},
            "latency_threads": 2,
            "latency_seq_len": 128,
            "device": "cpu",
        },
        "spec": {
            "task": "sequence-classification",
            "strategy": "prune_then_distill",
            "label_names": ["negative", "positive"],
            "target": {"params_ratio": 0.5, "sparsity": None, "pattern": "unstructured"},
            "distillation": {
                "temperature": 2.0,
                "alpha": 0.5,
                "hidden_states": True,
                "attention": False,
            },
            "training": {"max_seq_length": 128},
        },
        "training": {
            "teacher_finetune": _curve(30, 0.7, 10),
            "distilling": _curve(60, 2.5, 20),
        },
    }


def _check_png(path: Path) -> Image.Image:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    # A blank canvas of this size compresses to well under this.
    assert len(data) > 8_000
    image = Image.open(path)
    image.load()
    return image.convert("RGB")


def _pixels_of(image: Image.Image, color: str) -> int:
    rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    return sum(count for count, value in image.getcolors(maxcolors=1 << 20) if value == rgb)


def test_write_plots_with_a_teacher_curve(tmp_path: Path, report: dict[str, Any]) -> None:
    paths = write_plots(tmp_path, report)
    assert [p.name for p in paths] == [TRAINING_CURVES_PNG, COMPARISON_PNG]
    curves = _check_png(tmp_path / TRAINING_CURVES_PNG)
    comparison = _check_png(tmp_path / COMPARISON_PNG)
    # Both stages drawn, each in its colour; the comparison has bars of both models.
    assert _pixels_of(curves, TEACHER_COLOR) > 100
    assert _pixels_of(curves, STUDENT_COLOR) > 100
    assert _pixels_of(comparison, TEACHER_COLOR) > 2_000
    assert _pixels_of(comparison, STUDENT_COLOR) > 2_000


def test_training_curves_without_a_teacher_finetune(tmp_path: Path, report: dict[str, Any]) -> None:
    both = _check_png(plot_training_curves(report["training"], tmp_path / "both.png"))
    report["training"]["teacher_finetune"] = None
    paths = write_plots(tmp_path, report)
    only = _check_png(paths[0])
    # One panel instead of two, and no teacher line in it.
    assert only.width < both.width * 0.7
    assert _pixels_of(only, TEACHER_COLOR) == 0
    assert _pixels_of(only, STUDENT_COLOR) > 100


def test_curves_tolerate_missing_and_bad_points(tmp_path: Path) -> None:
    curves = {
        "teacher_finetune": [{"step": 1, "epoch": None, "loss": None}],
        "distilling": [
            {"step": 1, "epoch": 0.5, "loss": 1.0},
            {"step": 2, "epoch": 1.0, "loss": float("nan")},
            {"step": 3, "loss": 0.5},
        ],
    }
    image = _check_png(plot_training_curves(curves, tmp_path / "c.png"))
    assert _pixels_of(image, STUDENT_COLOR) > 0
    assert _pixels_of(image, TEACHER_COLOR) == 0
    for empty in (None, {}, {"distilling": None}, {"distilling": []}):
        path = plot_training_curves(empty, tmp_path / "empty.png")
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_comparison_tolerates_missing_values(tmp_path: Path, report: dict[str, Any]) -> None:
    metrics = copy.deepcopy(report["metrics"])
    metrics["student"]["latency_ms_cpu_bs32"] = None
    del metrics["student"]["size_bytes"]
    metrics["teacher"]["accuracy"] = None
    image = _check_png(plot_comparison(metrics, tmp_path / "partial.png"))
    assert _pixels_of(image, STUDENT_COLOR) > 1_000
    for empty in (None, {}, {"teacher": None, "student": {}}):
        path = plot_comparison(empty, tmp_path / "empty.png")
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_comparison_on_another_main_metric(tmp_path: Path, report: dict[str, Any]) -> None:
    metrics = copy.deepcopy(report["metrics"])
    for part in ("teacher", "student"):
        metrics[part]["f1"] = metrics[part].pop("accuracy")
    with_f1 = _pixels_of(
        _check_png(plot_comparison(metrics, tmp_path / "f1.png", "f1")), STUDENT_COLOR
    )
    # Asking for a metric the report lacks leaves that panel without bars.
    without = _pixels_of(
        _check_png(plot_comparison(metrics, tmp_path / "acc.png", "accuracy")), STUDENT_COLOR
    )
    assert with_f1 > without > 0


def test_write_plots_picks_f1_for_token_classification(
    tmp_path: Path, report: dict[str, Any]
) -> None:
    for part in ("teacher", "student"):
        report["metrics"][part]["f1"] = report["metrics"][part].pop("accuracy")
    report["spec"]["task"] = "token-classification"
    token = _pixels_of(_check_png(write_plots(tmp_path, report)[1]), STUDENT_COLOR)
    report["spec"]["task"] = "sequence-classification"
    sequence = _pixels_of(_check_png(write_plots(tmp_path, report)[1]), STUDENT_COLOR)
    assert token > sequence
    # The metric the report names wins over the task's usual one.
    report["metrics"]["main_metric"] = "f1"
    assert main_metric_of(report) == "f1"
    named = _pixels_of(_check_png(write_plots(tmp_path, report)[1]), STUDENT_COLOR)
    assert named == token


def test_model_card_links_the_plots(tmp_path: Path, report: dict[str, Any]) -> None:
    plots = write_plots(tmp_path, report)
    card = model_card(report["metrics"], report["spec"], plots)
    assert "![Training curves](training_curves.png)" in card
    assert "![Teacher vs student](teacher_vs_student.png)" in card
    assert "## Plots" not in model_card(report["metrics"], report["spec"])


def test_model_card_leads_with_the_reports_warnings(report: dict[str, Any]) -> None:
    assert "## Warnings" not in model_card(report["metrics"], report["spec"])
    message = "The student never predicts class 'refund' (9 eval rows; teacher recall 0.89)."
    report["metrics"]["warnings"] = [{"code": "class_never_predicted", "message": message}]
    report["metrics"]["retention_macro_f1"] = 0.7961
    card = model_card(report["metrics"], report["spec"])
    assert card.index("## Warnings") < card.index(f"- {message}") < card.index("## Results")
    assert "- Macro-F1 retention: 79.61%" in card
