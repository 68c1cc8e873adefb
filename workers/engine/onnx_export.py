"""ONNX exports of a classifier, fp32 and int8, and the ONNX Runtime sessions that run them.

Which exporter (issue #20), compared on this release's stack (torch 2.13, transformers 5):

- optimum's exporter moved to ``optimum-onnx`` with optimum 2.0; its newest release
  (0.1.0) requires ``transformers<4.58`` and ``optimum~=2.1``, so it cannot be installed
  beside the transformers 5 this engine runs. That decides it.
- ``torch.onnx.export(dynamo=False)`` (TorchScript tracing) still works but warns that
  it is deprecated and "will be removed", and traces transformers' mask code with
  TracerWarnings (Python booleans read from tensors), the kind of trace that can freeze
  an example's shape into the graph.
- ``torch.onnx.export(dynamo=True)``, the default since torch 2.9, exports through
  ``torch.export`` with symbolic batch and sequence dimensions. It is what we use.

The example batch has two rows of two tokens or more: torch.export specialises a
dimension of size 0 or 1, which would pin batch 1 into the graph. Weights are stored
inside the ``.onnx`` file (one file to ship) up to INLINE_MAX_BYTES; a larger model's go
to ``model.onnx.data`` beside it (ONNX's external data: one protobuf holds 2 GiB at most),
which ``onnxruntime.InferenceSession`` finds by itself. Its int8 copy is written the same
way, so no step ever serialises a protobuf of more than 2 GiB.

int8 is ONNX Runtime's dynamic quantization (weights int8 per output channel, activations
quantized on the fly), after ``quant_pre_process`` (symbolic shape inference and graph
optimisation) as ONNX Runtime recommends for transformers. Dynamic quantization needs no
calibration data and is what ORT's docs advise for transformer encoders on CPU. The
embedding tables (Gather) are quantized too. bench/results/onnx-int8-2026-12-04.md
(MiniLM-L6 on SST-2, 872 dev rows, 1 row = 0.11 points) measured the alternatives, as
accuracy change against fp32 ONNX for the teacher / a 3-layer student:

- MatMul/Gemm only, per channel: 0.00 / -0.69 points, 58.7 / 53.3 MB;
- the same per tensor: -0.69 / -0.57;
- embeddings quantized too (chosen): -0.34 / -0.11, 23.0 / 17.5 MB at the same latency;
- classifier and pooler left in fp32: 0.00 / -0.69 (the head is not what int8 costs);
- static QDQ calibrated on 256 training rows: -0.69 / -0.23, and 10-20% slower.

The differences are a few rows each; the embeddings' third of the file is not. A second
student (1,000 training rows) lost 0.57 points to the chosen int8
(bench/results/onnx-int8-job-2026-12-04.md): int8 costs these students up to about half
a point to two thirds of one; quantization-aware distillation is not tried yet.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from workers.engine.data import Batch, model_inputs

ONNX_FILE = "model.onnx"
OPSET = 18
# Above this many bytes of fp32 weights, they go to an external data file. Well under
# ONNX's 2 GiB protobuf limit (the graph and the pre-processed copy need room too); torch
# itself switches at 1.5 GiB.
INLINE_MAX_BYTES = 1 << 30


class LogitsOnly(torch.nn.Module):
    """The classifier with plain tensors in and logits out, keyword inputs named as the
    tokenizer names them, so ``session.run(None, dict(tokenizer(..., return_tensors="np")))``
    feeds it directly."""

    def __init__(self, model: PreTrainedModel, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def example_batch(batches: Iterator[Batch]) -> Batch:
    """The first batch with at least 2 rows of at least 2 tokens (see the module doc)."""
    for batch in batches:
        if batch["input_ids"].shape[0] >= 2 and batch["input_ids"].shape[1] >= 2:
            return model_inputs(batch)
    raise ValueError("ONNX export needs an example batch of 2 rows of 2 tokens or more")


def export_onnx(model: PreTrainedModel, example: Batch, path: Path) -> None:
    """``model`` (moved to CPU, fp32, eval) as ONNX at ``path``, with dynamic batch and
    sequence axes on every input and on the logits."""
    model = model.to("cpu").float().eval()
    example = model_inputs(example)
    names = list(example)
    inputs = tuple(example[name].to("cpu") for name in names)
    # Named dynamic dimensions (not Dim("seq", min=1)): torch.export then infers their
    # ranges itself, where a declared range it cannot prove (the position table caps the
    # sequence) fails the export; the graph still runs at batch 1 and at 1 token.
    dynamic = tuple({0: "batch", 1: "seq"} for _ in names)
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        torch.onnx.export(
            LogitsOnly(model, names),
            inputs,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(dynamic,),
            opset_version=OPSET,
            dynamo=True,
            external_data=weight_bytes > INLINE_MAX_BYTES,
            verbose=False,
        )


def quantize_int8(
    source: Path,
    dest: Path,
    *,
    per_channel: bool = True,
    nodes_to_exclude: Sequence[str] = (),
    op_types: Sequence[str] = ("MatMul", "Gemm", "Gather"),
    reduce_range: bool = True,
) -> None:
    """Dynamic int8 quantization of ``source`` into ``dest``, pre-processed first.

    ``reduce_range`` (the default): MatMul weights in 7 bits (-64..64) instead of 8. On
    an x86 CPU without VNNI or AMX, ONNX Runtime's uint8 x int8 kernel adds each pair of
    products into an int16 with saturation, which 8-bit weights can overflow: the same
    file then computes other numbers there than on a CPU with VNNI (a tiny token
    classifier's logits moved 0.58 against a largest logit of 2.18 on an AVX2 host).
    7-bit weights cannot overflow, so every CPU computes the exact integer result
    (tests/engine/test_fake_quant.py), whichever CPU the student is served on; on SST-2
    the two widths cost the teacher and three students at most 0.34 points either way,
    trading places (bench/results/int8-range-2026-12-07.md). The graph is the same op
    for op; only the weights' values differ."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dest.parent.mkdir(parents=True, exist_ok=True)
    prepared = dest.with_name(dest.stem + ".pre.onnx")
    # A source with external weights is too large for one protobuf: every copy made on
    # the way keeps its weights outside too (one file each, named after the model file).
    external = data_file(source).is_file()
    saving = {
        "save_as_external_data": external,
        "all_tensors_to_one_file": True,
        "external_data_location": data_file(prepared).name,
    }
    try:
        with _quiet():
            try:
                # auto_merge: the dynamo graph names its sequence dimension anew in
                # places; without merging them ORT's symbolic shape inference stops
                # ("Incomplete symbolic shape inference", measured on MiniLM).
                with _tidy_cwd():
                    quant_pre_process(str(source), str(prepared), auto_merge=True, **saving)
            except Exception:
                # An op it does not know (or a model past what it can serialise): ONNX's
                # own shape inference and the graph optimisation still run.
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True, **saving)
            quantize_dynamic(
                str(prepared),
                str(dest),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                op_types_to_quantize=list(op_types),
                nodes_to_exclude=list(nodes_to_exclude),
                use_external_data_format=external,
            )
    finally:
        prepared.unlink(missing_ok=True)
        data_file(prepared).unlink(missing_ok=True)


def head_nodes(path: Path) -> list[str]:
    """The MatMul/Gemm nodes of the classification head (for ``nodes_to_exclude``):
    those whose weight is a ``classifier``/``score`` parameter, or the pooler's."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and any(
            key in inp for inp in node.input for key in ("classifier", "score", "pooler")
        ):
            names.append(node.name)
    return names


def session(path: Path, *, threads: int) -> Any:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads.

    Spinning is off: an idle pool that spins would take the cores from whatever model
    is timed next in an interleaved pass (evaluate.py), which a served model does not
    share its cores with either.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds(sess: Any, batch: Batch) -> dict[str, np.ndarray]:
    """The session's inputs from a batch (int64, as the tokenizer gives them)."""
    return {i.name: batch[i.name].cpu().numpy().astype(np.int64) for i in sess.get_inputs()}


def ort_logits(sess: Any, batch: Batch) -> torch.Tensor:
    return torch.from_numpy(sess.run(["logits"], feeds(sess, batch))[0])


def data_file(path: Path) -> Path:
    """Where the external weights of the model at ``path`` are, when it has any (the name
    torch's exporter and ONNX Runtime's quantizer both write: the model's name + .data)."""
    return path.with_name(path.name + ".data")


def file_bytes(path: Path) -> int:
    """The .onnx file plus any external weights beside it."""
    extra = data_file(path)
    return path.stat().st_size + (extra.stat().st_size if extra.is_file() else 0)


@dataclass(frozen=True)
class Parity:
    """PyTorch against ONNX Runtime on the same real rows: the worst logit difference
    and how often the predicted class (per row, or per real token) is the same."""

    rows: int
    max_abs_logit_diff: float
    argmax_agreement: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "argmax_agreement": self.argmax_agreement,
        }


def parity(model: PreTrainedModel, sess: Any, batches: Sequence[Batch]) -> Parity:
    """Compared where the rows have tokens (padding positions of a token task's logits
    are never read, so they are not compared)."""
    model.eval()
    worst, same, total, rows = 0.0, 0, 0, 0
    for batch in batches:
        with torch.inference_mode():
            expected = model(**model_inputs(batch)).logits.float()
        actual = ort_logits(sess, batch).float()
        if expected.dim() == 3:
            keep = batch["attention_mask"].bool()
            expected, actual = expected[keep], actual[keep]
        worst = max(worst, (expected - actual).abs().max().item())
        same += int((expected.argmax(-1) == actual.argmax(-1)).sum())
        total += expected.shape[0]
        rows += int(batch["input_ids"].shape[0])
    return Parity(rows=rows, max_abs_logit_diff=worst, argmax_agreement=same / max(total, 1))


@contextlib.contextmanager
def _tidy_cwd() -> Iterator[None]:
    """ORT's symbolic shape inference, when it fails, saves what it got to
    ``sym_shape_infer_temp.onnx`` (and external ``<uuid>.data`` files) in the current
    folder; remove the ones that appeared while it ran."""
    cwd = Path.cwd()

    def litter() -> set[Path]:
        return {*cwd.glob("sym_shape_infer_temp.onnx"), *cwd.glob("*-*-*-*-*.data")}

    before = litter()
    try:
        yield
    finally:
        for path in litter() - before:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warn about things we chose (axis names shared by
    inputs, deprecated helpers inside torch); a job's log is no place for them."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
