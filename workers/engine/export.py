"""Export: the student as a plain transformers folder, checked by reloading it, plus the
report and a model card."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.jobspec import vocabulary
from workers.engine.data import EncodedSplit, iter_batches, model_inputs
from workers.engine.plots import PLOT_TITLES
from workers.engine.progress import Progress
from workers.engine.tasks import SEQUENCE_CLASSIFICATION, Task, get_task

RELOAD_TOLERANCE = 1e-4
RELOAD_CHECK_BATCHES = 3


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    # transformers 5 always writes safetensors (``safe_serialization`` is gone); the
    # check below makes sure no other format slipped in.
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if not any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
        raise RuntimeError(f"export did not produce safetensors weights in {folder.name}")


def verify_reload(
    model: PreTrainedModel,
    folder: Path,
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_token_id: int,
    progress: Progress,
    task: Task | None = None,
) -> float:
    """Reload with the task's stock Auto class (``AutoModelForSequenceClassification``
    when no task is given) and compare logits with the in-memory model.

    This is the promise the service makes (docs/architecture.md, rule 9): what it returns
    loads with plain transformers and behaves as measured.
    """
    task = task or get_task(SEQUENCE_CLASSIFICATION)
    reloaded = task.auto_class.from_pretrained(
        folder, use_safetensors=True, trust_remote_code=False, dtype=torch.float32
    )
    reloaded.eval()
    model.eval()
    worst = 0.0
    batches = iter_batches(split, batch_size, pad_token_id=pad_token_id)
    for _, batch in zip(range(RELOAD_CHECK_BATCHES), batches, strict=False):
        progress.check_stop()
        inputs = model_inputs(batch)
        with torch.inference_mode():
            expected = model(**inputs).logits.float()
            actual = reloaded(**inputs).logits.float()
        worst = max(worst, (expected - actual).abs().max().item())
    if not worst <= RELOAD_TOLERANCE:
        raise RuntimeError(
            f"the exported model does not reproduce the trained one: max |logit difference| "
            f"{worst:.3g} > {RELOAD_TOLERANCE}"
        )
    return worst


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _fmt_int(value: int) -> str:
    return f"{value:,}"


def _fmt_mb(value: int) -> str:
    return f"{value / 1e6:.1f} MB"


def _fmt_ms(value: float) -> str:
    return f"{value:.2f}"


def _fmt_pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def model_card(metrics: dict[str, Any], summary: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    teacher, student = metrics["teacher"], metrics["student"]
    task = get_task(summary.get("task", SEQUENCE_CLASSIFICATION))
    auto_class = task.auto_class.__name__
    rows = [
        *((label, _fmt_pct, key) for label, key in task.quality_rows),
        ("Encoder layers", str, "num_layers"),
        ("FFN width (intermediate_size)", str, "intermediate_size"),
        ("Parameters", _fmt_int, "num_parameters"),
        ("Non-embedding parameters", _fmt_int, "non_embedding_parameters"),
        ("Size on disk (safetensors)", _fmt_mb, "size_bytes"),
        (
            f"CPU latency, batch 1 ({metrics['latency_threads']} threads), ms",
            _fmt_ms,
            "latency_ms_cpu_bs1",
        ),
        (
            f"CPU latency, batch 32 ({metrics['latency_threads']} threads), ms",
            _fmt_ms,
            "latency_ms_cpu_bs32",
        ),
    ]
    table = ["| | Teacher | Student |", "|---|---:|---:|"]
    table += [
        f"| {label} | {fmt(teacher[key])} | {fmt(student[key])} |" for label, fmt, key in rows
    ]
    retention = metrics["retention"]
    finetuned = "yes" if metrics["teacher_finetuned"] else "no"
    labels = ", ".join(f"`{name}`" for name in summary["label_names"])
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {task.pipeline_tag}",
        "tags:",
        "- modelpress",
        "- knowledge-distillation",
        "- pruning",
        "---",
        "",
        f"# Compressed {task.model_noun}",
        "",
        f"Produced by modelpress with the `{summary['strategy']}` strategy: "
        f"{student['num_layers']} of the teacher's {teacher['num_layers']} encoder layers "
        f"kept (teacher layers {metrics['layer_map']}){_ffn_sentence(metrics)}, then "
        "distilled from the teacher "
        f"(alpha {summary['distillation']['alpha']}, temperature "
        f"{summary['distillation']['temperature']}"
        f"{', hidden-state loss' if summary['distillation']['hidden_states'] else ''}).",
        "",
        f"Labels: {labels}.",
        "",
        *_warnings_section(metrics),
        "## Results",
        "",
        *table,
        "",
        *_per_type_table(teacher, student),
        f"- {task.main_metric_label} retention: "
        f"{'n/a' if retention is None else _fmt_pct(retention)}",
        *_macro_f1_lines(metrics),
        f"- Compression (all parameters): {metrics['compression_ratio']:.2f}x",
        *_size_lines(metrics, summary),
        f"- CPU speed-up: {metrics['speedup_cpu_bs1']:.2f}x at batch 1, "
        f"{metrics['speedup_cpu_bs32']:.2f}x at batch 32",
        *_speed_target_lines(metrics),
        f"- Teacher fine-tuned by modelpress first: {finetuned}",
        "",
        "Latency is the median forward time at sequence length "
        f"{summary['training']['max_seq_length']} (padded), teacher and student timed "
        "interleaved on the same machine. Scores are on the evaluation split supplied with "
        "the job.",
        "",
        *_formats_section(metrics, task.main_metric_label, task.main_metric),
        *_plots_section(plots),
        "## Usage",
        "",
        *_usage(metrics, auto_class),
    ]
    return "\n".join(lines)


def _macro_f1_lines(metrics: dict[str, Any]) -> list[str]:
    value = metrics.get("retention_macro_f1")
    return [] if value is None else [f"- Macro-F1 retention: {_fmt_pct(value)}"]


def _warnings_section(metrics: dict[str, Any]) -> list[str]:
    """Above the results: what a reader of the table alone would miss (report.py)."""
    found = metrics.get("warnings") or []
    if not found:
        return []
    return ["## Warnings", "", *(f"- {w['message']}" for w in found), ""]


def _formats_section(metrics: dict[str, Any], label: str, key: str) -> list[str]:
    """One row per format the job shipped, in the runtime it runs in, and the teacher in
    each runtime, timed in the same pass (formats.py)."""
    rows, teacher = metrics.get("formats"), metrics.get("teacher_runtimes")
    if not rows or not teacher:
        return []
    threads = metrics["latency_threads"]
    lines = [
        "## Formats",
        "",
        f"Each format scored on the evaluation split and timed in its own runtime (CPU, "
        f"{threads} threads). Speed-ups at batch 1 / batch 32: against the teacher in the "
        "same runtime (what compression gives), and against the teacher in PyTorch fp32 "
        "(compression and runtime together).",
        "",
        f"| Format | Artifact | Runtime | {label} | Size | Batch 1, ms | Batch 32, ms "
        "| Speed-up, same runtime | Speed-up vs PyTorch teacher |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt, row in rows.items():
        lines.append(
            f"| {fmt} | `{row['artifact']}` | {row['runtime']} | {_fmt_pct(row[key])} "
            f"| {_fmt_mb(row['size_bytes'])} | {_fmt_ms(row['latency_ms_cpu_bs1'])} "
            f"| {_fmt_ms(row['latency_ms_cpu_bs32'])} "
            f"| {row['speedup_cpu_bs1']:.2f}x / {row['speedup_cpu_bs32']:.2f}x "
            f"| {row['speedup_vs_teacher_pytorch_cpu_bs1']:.2f}x / "
            f"{row['speedup_vs_teacher_pytorch_cpu_bs32']:.2f}x |"
        )
    for runtime, part in teacher.items():
        lines.append(
            f"| teacher | | {runtime} | {_fmt_pct(part[key])} | {_fmt_mb(part['size_bytes'])} "
            f"| {_fmt_ms(part['latency_ms_cpu_bs1'])} | {_fmt_ms(part['latency_ms_cpu_bs32'])} "
            "| | |"
        )
    parity = [
        f"{fmt}: max |logit difference| {row['parity']['max_abs_logit_diff']:.2g}, argmax "
        f"agreement {_fmt_pct(row['parity']['argmax_agreement'])} on "
        f"{row['parity']['rows']} rows"
        for fmt, row in rows.items()
        if "parity" in row
    ]
    if parity:
        lines += ["", "Checked against PyTorch on evaluation rows: " + "; ".join(parity) + "."]
    return [*lines, ""]


def _usage(metrics: dict[str, Any], auto_class: str) -> list[str]:
    shipped = metrics.get("formats") or {"safetensors": {}}
    lines: list[str] = []
    if "safetensors" in shipped:
        lines += [
            "```python",
            f"from transformers import {auto_class}, AutoTokenizer",
            "",
            f'model = {auto_class}.from_pretrained("path/to/model")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/model")',
            "```",
            "",
        ]
    for fmt in vocabulary.ONNX_FORMATS:
        if fmt in shipped:
            folder = f"path/to/{shipped[fmt]['artifact']}"
            lines += [
                f"`{fmt}` in ONNX Runtime (the folder holds the tokenizer and config.json "
                "with the labels):",
                "",
                "```python",
                "import onnxruntime",
                "from transformers import AutoTokenizer",
                "",
                f'session = onnxruntime.InferenceSession("{folder}/model.onnx")',
                f'tokenizer = AutoTokenizer.from_pretrained("{folder}")',
                'logits, = session.run(["logits"], dict(tokenizer(["some text"], '
                'return_tensors="np")))',
                "```",
                "",
            ]
    return lines


def _speed_target_lines(metrics: dict[str, Any]) -> list[str]:
    """A speedup target, and whether this report's own timing met it."""
    verdict = metrics.get("speedup_target")
    if not verdict:
        return []
    plan = metrics["pruning_plan"]["speed_plan"]
    met = "met" if verdict["met"] else "NOT met by this timing"
    runtime = verdict.get("runtime", "pytorch")
    where = "" if runtime == "pytorch" else f" in {runtime}"
    return [
        f"- Speed-up target {verdict['target']:g}x at batch 1{where}: {met} "
        f"({verdict['measured']:.2f}x here; the plan measured {plan['measured_speedup']:.2f}x "
        "when it chose the shape)"
    ]


def _size_lines(metrics: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """What was removed (parameters) or zeroed (sparsity), each said as what it is."""
    target = summary["target"]
    lines = []
    if target.get("params_ratio") is not None:
        lines.append(
            "- Non-embedding parameters kept: "
            f"{_fmt_pct(metrics['params_ratio_non_embedding'])} "
            f"(target {_fmt_pct(target['params_ratio'])})"
        )
    sparsity = metrics.get("sparsity")
    if sparsity:
        student, teacher = sparsity["student"], sparsity["teacher"]
        lines += [
            f"- Zero weights in the encoder's linear layers: {_fmt_pct(student['sparsity'])} "
            f"({sparsity['pattern']}, target {_fmt_pct(sparsity['target'])}); the weights "
            "are stored dense, so the file is as large as a dense one",
            f"- Size once compressed ({sparsity['compression']}): "
            f"{student['gzip_size_bytes']:,} bytes vs the teacher's "
            f"{teacher['gzip_size_bytes']:,}; any speed-up is the measured latency above, "
            "not a promise of sparse kernels",
        ]
    return lines


def _per_type_table(teacher: dict[str, Any], student: dict[str, Any]) -> list[str]:
    """Entity-level scores per type (token classification), as seqeval's report has
    them; nothing for tasks without entity types."""
    t_types, s_types = teacher.get("per_type"), student.get("per_type")
    if t_types is None or s_types is None:
        return []
    lines = [
        "Per entity type (precision / recall / F1; support = gold entities):",
        "",
        "| Type | Support | Teacher P | Teacher R | Teacher F1 | Student P | Student R "
        "| Student F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    for name in sorted(set(t_types) | set(s_types)):
        t, s = t_types.get(name, empty), s_types.get(name, empty)
        support = max(int(t["support"]), int(s["support"]))
        cells = [_fmt_pct(side[k]) for side in (t, s) for k in ("precision", "recall", "f1")]
        lines.append(f"| {name} | {support} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _ffn_sentence(metrics: dict[str, Any]) -> str:
    teacher, student = metrics["teacher"], metrics["student"]
    if student["intermediate_size"] == teacher["intermediate_size"]:
        return ""
    importance = metrics["pruning_plan"]["importance"]
    return (
        f", each with the {student['intermediate_size']} of its "
        f"{teacher['intermediate_size']} FFN neurons ranked highest by {importance} importance"
    )


def _plots_section(plots: Sequence[Path]) -> list[str]:
    # Links relative to the card, which is written beside the PNGs.
    if not plots:
        return []
    lines = ["## Plots", ""]
    for plot in plots:
        title = PLOT_TITLES.get(plot.name, plot.stem.replace("_", " "))
        lines += [f"![{title}]({plot.name})", ""]
    return lines


def write_model_card(
    path: Path, metrics: dict[str, Any], summary: dict[str, Any], plots: Sequence[Path] = ()
) -> None:
    path.write_text(model_card(metrics, summary, plots), encoding="utf-8")
