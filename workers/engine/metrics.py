"""Quality scores: what a task's ``score`` reports for one model on the eval split.

Each score type names its ``main_metric``, the one retention and reports compare
(student / teacher), and flattens to plain JSON values with ``as_dict``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class ClassificationScores:
    """Sequence classification: accuracy and macro-F1, and per class (by label name)
    ``precision``, ``recall``, ``f1``, ``support`` (eval rows of that class) and
    ``predicted`` (eval rows given that class). ``never_predicted`` names the classes
    the eval split has that the model gave to no row: accuracy hides a rare class
    lost entirely, macro-F1 and this list do not."""

    accuracy: float
    macro_f1: float
    # Empty in checkpoints written before per-class scores were kept.
    per_class: dict[str, dict[str, float | int]] = field(default_factory=dict)
    never_predicted: tuple[str, ...] = ()
    main_metric: ClassVar[str] = "accuracy"

    @property
    def main(self) -> float:
        return self.accuracy

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {name: dict(row) for name, row in self.per_class.items()},
            "never_predicted": list(self.never_predicted),
        }

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
    # Entity types the gold tags have that the model never predicted (no entity of
    # that type at all, right or wrong).
    never_predicted: tuple[str, ...] = ()
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
            "never_predicted": list(self.never_predicted),
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
    rows = per_class(predictions, labels)
    if not rows:
        return 0.0
    return sum(float(row["f1"]) for row in rows.values()) / len(rows)


def per_class(predictions: list[int], labels: list[int]) -> dict[int, dict[str, float | int]]:
    """Precision, recall, F1, support and predicted count of each class id seen in
    labels or predictions (an undefined ratio is 0, as sklearn's zero_division=0)."""
    support = Counter(labels)
    predicted = Counter(predictions)
    hits = Counter(y for p, y in zip(predictions, labels, strict=True) if p == y)
    out: dict[int, dict[str, float | int]] = {}
    for c in sorted(set(support) | set(predicted)):
        tp, n_pred, n_gold = hits[c], predicted[c], support[c]
        out[c] = {
            "precision": tp / n_pred if n_pred else 0.0,
            "recall": tp / n_gold if n_gold else 0.0,
            "f1": 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0,
            "support": n_gold,
            "predicted": n_pred,
        }
    return out


def classification_scores(
    predictions: list[int], labels: list[int], label_names: Sequence[str] = ()
) -> ClassificationScores:
    """Accuracy, macro-F1 and the per-class rows, named by ``label_names`` (by id where
    a name is missing), and the classes of the eval split never predicted."""
    rows = per_class(predictions, labels)

    def name(c: int) -> str:
        return label_names[c] if 0 <= c < len(label_names) else str(c)

    return ClassificationScores(
        accuracy=accuracy(predictions, labels),
        macro_f1=macro_f1(predictions, labels),
        per_class={name(c): row for c, row in rows.items()},
        never_predicted=tuple(
            name(c) for c, row in rows.items() if row["support"] and not row["predicted"]
        ),
    )


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
    from seqeval.metrics.sequence_labeling import get_entities

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
    # Entities the model predicted, right or wrong, by type (seqeval's own chunking).
    predicted_types = Counter(kind for kind, _, _ in get_entities(predicted_rows))
    per_type = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
            "predicted": predicted_types[name],
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
        never_predicted=tuple(
            name for name, row in per_type.items() if row["support"] and not row["predicted"]
        ),
    )
