"""Quality scores: what a task's ``score`` reports for one model on the eval split.

Each score type names its ``main_metric``, the one retention and reports compare
(student / teacher), and flattens to plain JSON values with ``as_dict``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class ClassificationScores:
    """Sequence classification: accuracy and macro-F1."""

    accuracy: float
    macro_f1: float
    main_metric: ClassVar[str] = "accuracy"

    @property
    def main(self) -> float:
        return self.accuracy

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}

    def summary(self) -> str:
        return f"accuracy {self.accuracy:.4f}, macro-F1 {self.macro_f1:.4f}"


@dataclass(frozen=True)
class EntityScores:
    """Token classification: entity-level precision, recall and F1 (micro over all
    entities, as conlleval reports them), per entity type, and word-level accuracy.

    ``per_type[type]`` holds ``precision``, ``recall``, ``f1`` and ``support`` (the
    number of gold entities of that type).
    """

    precision: float
    recall: float
    f1: float
    token_accuracy: float
    per_type: dict[str, dict[str, float | int]] = field(default_factory=dict)
    main_metric: ClassVar[str] = "f1"

    @property
    def main(self) -> float:
        return self.f1

    def as_dict(self) -> dict[str, Any]:
        return {
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "token_accuracy": self.token_accuracy,
            "per_type": {name: dict(row) for name, row in self.per_type.items()},
        }

    def summary(self) -> str:
        return (
            f"entity F1 {self.f1:.4f} (precision {self.precision:.4f}, recall "
            f"{self.recall:.4f}), token accuracy {self.token_accuracy:.4f}"
        )


Quality = ClassificationScores | EntityScores


def accuracy(predictions: list[int], labels: list[int]) -> float:
    if not labels:
        return 0.0
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def macro_f1(predictions: list[int], labels: list[int]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in labels or predictions
    (sklearn's default set): a class absent from both says nothing about the model."""
    classes = sorted(set(labels) | set(predictions))
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(predictions, labels, strict=True))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels, strict=True))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels, strict=True))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else 0.0)
    return sum(scores) / len(scores)


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> EntityScores:
    """seqeval's entity-level scores of IOB2 tag sequences, one list of tag names per
    sentence (gold and predicted of equal lengths).

    seqeval's default (conlleval-compatible) mode: an ``I-X`` that follows ``O`` starts
    an entity, as in the published CoNLL-2003 numbers. An entity counts only when its
    type and both boundaries match.
    """
    # Imported here: seqeval pulls in scikit-learn, which nothing else in a worker needs.
    from seqeval.metrics import accuracy_score, classification_report

    gold_rows, predicted_rows = [list(s) for s in gold], [list(s) for s in predicted]
    for i, (g, p) in enumerate(zip(gold_rows, predicted_rows, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    if not any(gold_rows):
        return EntityScores(precision=0.0, recall=0.0, f1=0.0, token_accuracy=0.0)
    with warnings.catch_warnings():
        # zero_division=0 already says what an undefined ratio becomes.
        warnings.simplefilter("ignore")
        report = classification_report(gold_rows, predicted_rows, output_dict=True, zero_division=0)
        token_accuracy = float(accuracy_score(gold_rows, predicted_rows))
    overall = report.get("micro avg", {})
    per_type = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in sorted(report.items())
        if not name.endswith(" avg")
    }
    return EntityScores(
        precision=float(overall.get("precision", 0.0)),
        recall=float(overall.get("recall", 0.0)),
        f1=float(overall.get("f1-score", 0.0)),
        token_accuracy=token_accuracy,
        per_type=per_type,
    )
