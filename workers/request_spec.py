"""The engine spec's sections from a job request's vocabulary (API.md's job body).

Shared by the worker (``workers/inputs.py``, a stored job request) and by ``modelpress
compress`` (a spec file): one mapping, so the two cannot drift apart. Pure Python: no
torch, no database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from workers.engine.spec import (
    DistillationSpec,
    ExportSpec,
    LatencyPoint,
    PruningSpec,
    TargetSpec,
    TrainingSpec,
)

T = TypeVar("T")


def spec_from(cls: type[T], fields: Mapping[str, Any]) -> T:
    """One engine spec section from the same section of a job request.

    Requests stored before a field existed lack it and get the spec's default; a request
    field the spec does not know is a bug between the API and the engine, so it fails
    loudly here instead of being dropped.
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown} that the job request gives")
    return cls(**fields)


def engine_sections(request: Mapping[str, Any]) -> dict[str, Any]:
    """``CompressionSpec`` keyword arguments for what the request says about the
    compression itself: ``task``, ``target``, ``strategy``, ``distillation``,
    ``pruning``, ``training`` and ``export`` (paths, labels and device are the
    caller's)."""
    target = request["target"]
    pruning = request["pruning"]
    return {
        "task": request["task"],
        "target": TargetSpec(
            params_ratio=target.get("params_ratio"),
            sparsity=target.get("sparsity"),
            pattern=target.get("pattern") or "unstructured",
            speedup=target.get("speedup"),
            runtime=target.get("runtime") or "pytorch",
        ),
        "strategy": request["strategy"],
        "distillation": spec_from(DistillationSpec, request["distillation"]),
        "pruning": spec_from(PruningSpec, {**pruning, "structured": tuple(pruning["structured"])}),
        "training": spec_from(TrainingSpec, request["training"]),
        # Requests stored before export existed asked for the safetensors folder alone.
        "export": export_spec(request.get("export")),
        "latency_point": latency_point(target),
    }


def export_spec(export: Mapping[str, Any] | None) -> ExportSpec:
    """Requests stored before export existed asked for the safetensors folder alone;
    ``keep_candidates`` is the sweep's (the API's), not the engine's."""
    if not export:
        return ExportSpec()
    fields = {k: v for k, v in export.items() if k != "keep_candidates"}
    return spec_from(ExportSpec, {**fields, "formats": tuple(fields.get("formats", ()))})


def latency_point(target: Mapping[str, Any]) -> LatencyPoint | None:
    """A speedup target's ``batch_size`` (and ``seq_len``): a sweep's candidate timed
    where the sweep reads it (app/sweeps/state.py ``child_request``); the API allows them
    on a max_latency_ms target alone, so only a candidate's request has them here."""
    if target.get("speedup") is None or not target.get("batch_size"):
        return None
    return LatencyPoint(int(target["batch_size"]), target.get("seq_len"))
