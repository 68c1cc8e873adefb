"""The ``exporting`` phase: the student saved in each of the spec's formats, the
safetensors one reloaded and compared with the model in memory."""

from __future__ import annotations

from transformers import PreTrainedModel

from workers.engine.export import save_model, verify_reload
from workers.engine.formats import format_folder, write_side_files
from workers.engine.phases.run import Run


def export(run: Run, student: PreTrainedModel) -> float | None:
    """Write the student's folders; the largest logit difference after reloading the
    safetensors export (None when that format is not asked for)."""
    spec, progress = run.spec, run.progress
    progress.start_phase("exporting")
    with run.timed("exporting"):
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        max_diff: float | None = None
        if "safetensors" in spec.export.formats:
            model_dir = format_folder(spec, "safetensors")
            save_model(student, run.tokenizer, model_dir)
            progress.within(0.4)
            max_diff = verify_reload(
                student,
                model_dir,
                run.evaluation,
                batch_size=spec.training.batch_size,
                pad_token_id=run.pad_id,
                progress=progress,
                task=run.task,
            )
        for fmt in spec.export.formats:
            if fmt != "safetensors":
                # The ONNX models themselves were written while evaluating.
                write_side_files(format_folder(spec, fmt), student, run.tokenizer)
        progress.within(0.8)
    return max_diff
