"""A fine-tuned teacher as one file a later run with the same key can start from.

One safetensors file (read without pickle, as every model the service loads): the
teacher's state dict under ``teacher.``, the torch RNG states where fine-tuning left
them under ``rng.`` (so a run that starts from the entry draws what a run that
fine-tuned would draw next, and trains the same student), and in the header's metadata
the key it was made under, its fine-tuning curve and the seconds fine-tuning took.
Where it is kept, and who may read it, is the caller's business (the worker's:
``workers/teacher_cache.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from workers.engine.run_state import Curve, RngState, StateDict

ENTRY_FORMAT = "1"
_TEACHER, _RNG = "teacher.", "rng."


class UnusableEntry(Exception):
    """An entry a run will not start from; the message says why."""


@dataclass(frozen=True)
class CachedTeacher:
    key: str
    weights: StateDict
    rng: RngState
    curve: Curve | None
    finetune_s: float


def write_entry(
    path: Path,
    *,
    key: str,
    weights: StateDict,
    rng: RngState,
    curve: Curve | None,
    finetune_s: float,
) -> Path:
    tensors = {_TEACHER + name: t.detach().to("cpu").contiguous() for name, t in weights.items()}
    tensors[_RNG + "cpu"] = rng["cpu"]
    for i, state in enumerate(rng.get("cuda", ())):
        tensors[f"{_RNG}cuda.{i}"] = state
    metadata = {
        "format": ENTRY_FORMAT,
        "key": key,
        "curve": json.dumps(curve),
        "finetune_s": repr(float(finetune_s)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_entry(path: Path, *, key: str) -> CachedTeacher:
    """The entry at ``path``, which must have been made under ``key``."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta: dict[str, Any] = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError) as e:
        raise UnusableEntry(f"the cached teacher could not be read: {e}") from e
    if meta.get("format") != ENTRY_FORMAT:
        raise UnusableEntry(
            f"the cached teacher has format {meta.get('format')!r}, this engine reads "
            f"{ENTRY_FORMAT!r}"
        )
    if meta.get("key") != key:
        raise UnusableEntry("the cached teacher was made under another key")
    cuda = sorted(
        (int(n.rsplit(".", 1)[1]), t) for n, t in tensors.items() if n.startswith(_RNG + "cuda.")
    )
    rng: RngState = {"cpu": tensors[_RNG + "cpu"]}
    if cuda:
        rng["cuda"] = [t for _, t in cuda]
    return CachedTeacher(
        key=key,
        weights={n[len(_TEACHER) :]: t for n, t in tensors.items() if n.startswith(_TEACHER)},
        rng=rng,
        curve=json.loads(meta.get("curve", "null")),
        finetune_s=float(meta.get("finetune_s", "0")),
    )


def load_weights(model: torch.nn.Module, weights: StateDict) -> None:
    """Into ``model``, which must have exactly these tensors and shapes: checked before
    anything is copied, so a refused entry leaves the model as it was."""
    own = model.state_dict()
    differ = sorted(
        set(own) ^ set(weights)
        | {k for k in own.keys() & weights.keys() if own[k].shape != weights[k].shape}
    )
    if differ:
        raise UnusableEntry(
            f"the cached teacher does not fit this teacher ({len(differ)} tensors differ, "
            f"e.g. {', '.join(differ[:3])})"
        )
    model.load_state_dict(weights, strict=True)
