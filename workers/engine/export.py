"""Export: the student as a plain transformers folder, checked by reloading it, plus the
report and a model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from workers.engine.data import EncodedSplit, iter_batches, model_inputs
from workers.engine.progress import Progress

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
) -> float:
    """Reload with the stock Auto class and compare logits with the in-memory model.

    This is the promise the service makes (ARCHITECTURE.md rule 7): what it returns
    loads with plain transformers and behaves as measured.
    """
    reloaded = AutoModelForSequenceClassification.from_pretrained(
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


def model_card(metrics: dict[str, Any], summary: dict[str, Any]) -> str:
    teacher, student = metrics["teacher"], metrics["student"]
    rows = [
        ("Accuracy", _fmt_pct, "accuracy"),
        ("Macro-F1", _fmt_pct, "macro_f1"),
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
        "pipeline_tag: text-classification",
        "tags:",
        "- modelpress",
        "- knowledge-distillation",
        "- pruning",
        "---",
        "",
        "# Compressed sequence classifier",
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
        "## Results",
        "",
        *table,
        "",
        f"- Accuracy retention: {'n/a' if retention is None else _fmt_pct(retention)}",
        f"- Compression (all parameters): {metrics['compression_ratio']:.2f}x",
        f"- Non-embedding parameters kept: {_fmt_pct(metrics['params_ratio_non_embedding'])}"
        f" (target {_fmt_pct(summary['target']['params_ratio'])})",
        f"- CPU speed-up: {metrics['speedup_cpu_bs1']:.2f}x at batch 1, "
        f"{metrics['speedup_cpu_bs32']:.2f}x at batch 32",
        f"- Teacher fine-tuned by modelpress first: {finetuned}",
        "",
        "Latency is the median forward time at sequence length "
        f"{summary['training']['max_seq_length']} (padded), teacher and student timed "
        "interleaved on the same machine. Scores are on the evaluation split supplied with "
        "the job.",
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        'model = AutoModelForSequenceClassification.from_pretrained("path/to/model")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/model")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _ffn_sentence(metrics: dict[str, Any]) -> str:
    teacher, student = metrics["teacher"], metrics["student"]
    if student["intermediate_size"] == teacher["intermediate_size"]:
        return ""
    importance = metrics["pruning_plan"]["importance"]
    return (
        f", each with the {student['intermediate_size']} of its "
        f"{teacher['intermediate_size']} FFN neurons ranked highest by {importance} importance"
    )


def write_model_card(path: Path, metrics: dict[str, Any], summary: dict[str, Any]) -> None:
    path.write_text(model_card(metrics, summary), encoding="utf-8")
