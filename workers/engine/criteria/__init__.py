"""The criteria ``pruning.importance`` names: one file each in this package, every module
but ``base`` and ``units`` imported here so that its class registers itself. Adding a
criterion is one new file and its name in ``app/jobspec/vocabulary.py``
(workers/engine/README.md).
"""

from __future__ import annotations

import importlib
import pkgutil

from workers.engine.criteria.base import CRITERIA, Criterion, WeightScorer
from workers.engine.criteria.units import STRUCTURES, StructureScores

__all__ = ["CRITERIA", "STRUCTURES", "Criterion", "StructureScores", "WeightScorer", "get"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in ("base", "units"):
        importlib.import_module(f"{__name__}.{_info.name}")


def get(name: str) -> Criterion:
    """The criterion called ``name``; an unknown name is an EngineInputError."""
    return CRITERIA.get(name)()
