"""The end of the ``exporting`` phase: report.json, the plots and the model card, and
the result ``compress()`` returns."""

from __future__ import annotations

from typing import Any

from workers.engine.export import write_model_card, write_report
from workers.engine.format_plot import FORMATS_PNG, plot_formats
from workers.engine.formats import ARTIFACT, format_folder
from workers.engine.phases.evaluating import Evaluation
from workers.engine.phases.prune_distill import Student
from workers.engine.phases.run import Run
from workers.engine.phases.teacher_finetune import FinetunedTeacher
from workers.engine.plots import write_plots
from workers.engine.report import spec_summary
from workers.engine.spec import ArtifactFile, CompressionResult


def report(
    run: Run,
    teacher: FinetunedTeacher,
    student: Student,
    evaluation: Evaluation,
    *,
    reload_diff: float | None,
) -> CompressionResult:
    """Write what a reader of the run gets besides the model, and list every artifact."""
    spec, metrics, onnx = run.spec, evaluation.metrics, evaluation.onnx
    # The formats are not part of spec_summary, which fingerprints checkpoints: the
    # training a checkpoint holds does not depend on them.
    summary = {
        **spec_summary(spec, run.teacher_config),
        "export": {"formats": list(spec.export.formats)},
    }
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    report_path = spec.output_dir / "report.json"
    card_path = spec.output_dir / "README.md"
    content: dict[str, Any] = {
        "metrics": metrics,
        "spec": summary,
        "data": {
            "train_examples": len(run.train),
            "eval_examples": len(run.evaluation),
            "max_seq_length": run.max_len,
        },
        "training": {"teacher_finetune": teacher.curve, "distilling": student.curve},
        "export": {
            "formats": list(spec.export.formats),
            "reload_max_abs_logit_diff": reload_diff,
            "parity": onnx.parity if onnx is not None else {},
            "export_s": {k: round(v, 3) for k, v in onnx.export_s.items()} if onnx else {},
        },
        # Up to the report itself, which records them.
        "timings_s": {k: round(v, 3) for k, v in run.timings.items()},
    }
    write_report(report_path, content)
    plots = write_plots(spec.output_dir, content)
    formats_plot = plot_formats(metrics, spec.output_dir / FORMATS_PNG, run.task.main_metric)
    if formats_plot is not None:
        plots.append(formats_plot)
    write_model_card(card_path, metrics, summary, plots)
    run.progress.finish()
    return CompressionResult(
        metrics=metrics,
        artifacts=[
            *(
                ArtifactFile(ARTIFACT[fmt], "model", format_folder(spec, fmt))
                for fmt in spec.export.formats
            ),
            ArtifactFile("report", "report", report_path),
            ArtifactFile("model-card", "model_card", card_path),
            *(ArtifactFile(p.stem.replace("_", "-"), "plot", p) for p in plots),
        ],
    )
