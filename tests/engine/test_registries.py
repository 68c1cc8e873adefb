"""Every part the engine registers by name is one the vocabulary names, and the reverse:
the API accepts exactly what the engine can look up (app/jobspec/vocabulary.py,
app/jobspec/registry.py). A criterion, loss, task, strategy or family registered without its
name in the vocabulary fails here, as does a name with nothing registered."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from app.jobspec import families, vocabulary
from app.jobspec.registry import Registry
from workers.engine import criteria, losses, strategies, tasks

REGISTRIES = {
    "IMPORTANCE": criteria.CRITERIA,
    "LOSSES": losses.LOSSES,
    "TASKS": tasks.TASKS,
    "STRATEGIES": strategies.STRATEGIES,
    "FAMILIES": families.FAMILIES,
}


def disagreement(registry: Registry, names: Collection[str]) -> list[str]:
    registered, named = set(registry.names()), set(names)
    problems = []
    if registered - named:
        problems.append(f"registered, not in the vocabulary: {sorted(registered - named)}")
    if named - registered:
        problems.append(f"in the vocabulary, not registered: {sorted(named - registered)}")
    return problems


@pytest.mark.parametrize("vocabulary_list", sorted(REGISTRIES))
def test_the_registry_holds_what_the_vocabulary_names(vocabulary_list):
    registry = REGISTRIES[vocabulary_list]
    assert disagreement(registry, getattr(vocabulary, vocabulary_list)) == []


def test_a_part_the_api_does_not_know_and_a_name_with_no_part_both_fail(monkeypatch):
    monkeypatch.setitem(criteria.CRITERIA, "entropy", criteria.CRITERIA.get("magnitude"))
    assert disagreement(criteria.CRITERIA, vocabulary.IMPORTANCE) == [
        "registered, not in the vocabulary: ['entropy']"
    ]
    assert disagreement(losses.LOSSES, (*vocabulary.LOSSES, "cosine")) == [
        "in the vocabulary, not registered: ['cosine']"
    ]


def test_each_default_is_registered():
    assert vocabulary.DEFAULT_IMPORTANCE in criteria.CRITERIA
    assert vocabulary.DEFAULT_STRATEGY in strategies.STRATEGIES
