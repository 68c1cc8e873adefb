"""Model families as adapters: one file per family names the modules that pruning and
distillation touch, the config keys of its sizes, its parameter layout and what it can
lose. ``plan.py``, ``layers.py`` and ``prune_width.py`` ask the family of a config's
``model_type`` and never test a model type themselves.

Torch-free: the API imports this registry to say which teachers and structures a job
may ask for (``vocabulary.MODEL_TYPES`` is derived from it). Every module here but
``base`` is registered, so adding a family is one new file plus its tests
(workers/engine/README.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Collection, Mapping
from typing import Any

from app.jobspec.errors import EngineInputError
from app.jobspec.families.base import Axes, ConfigKeys, Family, Head, Layout
from app.jobspec.registry import Registry

__all__ = [
    "FAMILIES",
    "Axes",
    "ConfigKeys",
    "Family",
    "Head",
    "Layout",
    "family_of",
    "for_config",
    "get",
    "model_types",
    "names",
    "onnx_model_types",
    "unsupported_structures",
]

# By name (``vocabulary.FAMILIES``), and by the config's model_type.
FAMILIES: Registry[Family] = Registry("model family")
_BY_MODEL_TYPE: dict[str, Family] = {}
# Every module here but base.py is a family file whose FAMILIES it registers: adding a
# family touches nothing else.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base":
        for _family in importlib.import_module(f"{__name__}.{_info.name}").FAMILIES:
            FAMILIES.add(_family.name, _family)
            _BY_MODEL_TYPE |= dict.fromkeys(_family.model_types, _family)


def names() -> tuple[str, ...]:
    """Every family's name, in registration order."""
    return FAMILIES.names()


def model_types() -> tuple[str, ...]:
    """Every ``model_type`` a teacher may have, in registration order."""
    return tuple(_BY_MODEL_TYPE)


def onnx_model_types() -> tuple[str, ...]:
    """The model types whose ONNX export the tests check."""
    return tuple(t for t, f in _BY_MODEL_TYPE.items() if t in f.onnx)


def get(name: str) -> Family:
    """A family by its name (``TeacherSizes.family``)."""
    return FAMILIES.get(name)


def family_of(model_type: str | None) -> Family:
    family = _BY_MODEL_TYPE.get(model_type or "")
    if family is None:
        supported = ", ".join(repr(t) for t in model_types())
        raise EngineInputError(
            "model_unsupported",
            f"Teacher model_type {model_type!r} is not supported; supported: {supported}.",
            param="teacher.model_id",
        )
    return family


def for_config(config: Mapping[str, Any] | Any) -> Family:
    """The family of a config.json dict or a transformers config."""
    model_type = config.get("model_type") if isinstance(config, Mapping) else None
    if model_type is None:
        model_type = getattr(config, "model_type", None)
    return family_of(model_type)


def unsupported_structures(family: Family, structured: Collection[str]) -> list[str]:
    """What of ``structured`` the family cannot lose yet (not what its config never
    can describe: ``Family.impossible``)."""
    return [s for s in structured if s not in family.structures and s not in family.impossible]
