"""The final pass of bench/sst2.py: every row's saved model loaded from disk, in each
runtime asked for (PyTorch, ONNX Runtime fp32 and int8: bench/runtimes.py), scored on
SST-2 dev (the engine's ``quality`` and ``ort_quality``) and timed together, so that no
row is measured under different conditions.

Latency is the engine's interleaved timing of every model in every runtime at once:
round-robin (a, b, c, a, b, c, ...), median of repetitions, fixed thread count, inputs
padded to a fixed sequence length; repeated ``rounds`` times and the median of the
rounds' medians kept, with each round's figure in the JSON.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from bench import runtimes
from bench.common import LABELS
from workers.engine.data import EncodedSplit
from workers.engine.evaluate import quality
from workers.engine.formats import ort_quality
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import NullCallback
from workers.engine.tasks import SEQUENCE_CLASSIFICATION, get_task
from workers.engine.teacher import load_tokenizer

ZLIB_LEVEL = 1
ZLIB_CHUNK = 1 << 22


def safetensors_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def load_saved(folder: Path) -> tuple[PreTrainedModel, str | None]:
    """The model as plain transformers loads it. When that load fails (transformers 5
    refuses weights whose shapes config.json does not describe) or does not match the
    weights, the model is rebuilt from config.json with each Linear resized to its
    saved shape, and the second value says why plain loading did not do."""
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            folder,
            use_safetensors=True,
            trust_remote_code=False,
            dtype=torch.float32,
            output_loading_info=True,
        )
    except (RuntimeError, ValueError) as exc:
        model, resized = _rebuilt(folder)
        shown = "; ".join(resized[:2]) + (" ..." if len(resized) > 2 else "")
        return model, (
            f"plain from_pretrained fails ({str(exc).splitlines()[0][:120]}): config.json "
            f"does not describe {len(resized)} saved Linear weights, e.g. {shown}"
        )
    problems = {
        k: [str(x) for x in v]
        for k, v in info.items()
        if k in ("missing_keys", "mismatched_keys") and v
    }
    if not problems:
        return model.eval(), None
    model, _ = _rebuilt(folder)
    return model, f"plain from_pretrained does not match the weights: {problems}"[:400]


def _rebuilt(folder: Path) -> tuple[PreTrainedModel, list[str]]:
    tensors: dict[str, torch.Tensor] = {}
    for path in safetensors_paths(folder):
        tensors.update(load_file(str(path)))
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_config(config)
    resized = []
    for name, module in list(model.named_modules()):
        saved = tensors.get(f"{name}.weight")
        if not isinstance(module, nn.Linear) or saved is None:
            continue
        if saved.shape != module.weight.shape:
            resized.append(f"{name} {tuple(saved.shape)} vs {tuple(module.weight.shape)}")
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            bias = f"{name}.bias" in tensors
            setattr(parent, attr, nn.Linear(saved.shape[1], saved.shape[0], bias=bias))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"{folder}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), resized


def size_bytes(folder: Path) -> tuple[int, int]:
    """Bytes of the safetensors files, as saved and as zlib (level 1) would ship them:
    zeros that keep dense shapes only shrink the second."""
    raw = packed = 0
    for path in safetensors_paths(folder):
        raw += path.stat().st_size
        compressor = zlib.compressobj(ZLIB_LEVEL)
        with path.open("rb") as handle:
            while chunk := handle.read(ZLIB_CHUNK):
                packed += len(compressor.compress(chunk))
        packed += len(compressor.flush())
    return raw, packed


def counts(model: PreTrainedModel) -> dict[str, int]:
    encoder = list(model.base_model.encoder.parameters())
    return {
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "encoder_parameters": sum(p.numel() for p in encoder),
        "encoder_nonzero": sum(int(torch.count_nonzero(p)) for p in encoder),
    }


def load(folder: Path) -> tuple[PreTrainedModel, dict[str, Any], dict[str, Any]]:
    """The model, its parameter counts, and what its saved folder weighs and how it loads."""
    model, not_plain = load_saved(folder)
    raw, packed = size_bytes(folder)
    saved = {
        "size_bytes": raw,
        "size_bytes_zlib": packed,
        "reloads_with_plain_transformers": not_plain is None,
        **({"reload_problem": not_plain} if not_plain else {}),
    }
    return model, counts(model), saved


def measure_all(
    folders: dict[str, Path],
    dev: EncodedSplit,
    *,
    batch_size: int,
    final: runtimes.FinalPass,
) -> dict[str, Any]:
    """Quality, size and CPU latency of every saved model in every runtime, keyed like
    ``folders`` then by runtime (bench/runtimes.py)."""
    runtime = Runtime(torch.device("cpu"))
    progress = Progress(NullCallback())
    task = get_task(SEQUENCE_CLASSIFICATION)
    tokenizer = load_tokenizer(next(iter(folders.values())))
    pad_id = int(tokenizer.pad_token_id)

    def score(thing: Any, where: str) -> dict[str, Any]:
        if where == "pytorch":
            scores = quality(
                thing,
                dev,
                batch_size=batch_size,
                pad_token_id=pad_id,
                runtime=runtime,
                progress=progress,
            )
        else:
            scores = ort_quality(
                thing,
                dev,
                task=task,
                batch_size=batch_size,
                pad_token_id=pad_id,
                label_names=LABELS,
                progress=progress,
            )
        return {"dev_accuracy": scores.accuracy, "dev_macro_f1": scores.macro_f1}

    return runtimes.measure_all(
        folders,
        load=load,
        score=score,
        main="dev_accuracy",
        tokenizer=tokenizer,
        texts=dev.texts,
        final=final,
    )
