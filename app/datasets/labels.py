"""Labels across splits: an eval split with a label its training split lacks holds a
class the student can never learn (most often a typo in a label). Said at upload, in
the dataset's ``warnings``, and refused when a job would train on it
(app/jobs/validation.py), unless the job allows it."""

from __future__ import annotations

from typing import Any

TRAIN = "train"
LABELS_MISSING_FROM_TRAIN = "labels_missing_from_train"


def unseen_labels(
    label_counts: dict[str, dict[str, int]], *, train: str, other: str
) -> dict[str, int]:
    """The labels of split ``other`` that ``train`` lacks, with their counts in
    ``other``; empty when either split's counts are unknown."""
    if train not in label_counts or other not in label_counts:
        return {}
    seen = {name for name, n in label_counts[train].items() if n > 0}
    return {name: n for name, n in label_counts[other].items() if n > 0 and name not in seen}


def describe(labels: dict[str, int]) -> str:
    return ", ".join(f"{name!r} ({n})" for name, n in sorted(labels.items()))


def label_warnings(label_counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """What the upload should tell: for each split other than train, the labels it has
    and train lacks. Computed once, at upload, and stored with the dataset."""
    out: list[dict[str, Any]] = []
    for split in sorted(label_counts):
        if split == TRAIN:
            continue
        unseen = unseen_labels(label_counts, train=TRAIN, other=split)
        if unseen:
            out.append(
                {
                    "code": LABELS_MISSING_FROM_TRAIN,
                    "split": split,
                    "labels": sorted(unseen),
                    "message": f"Split {split!r} has labels that split 'train' lacks: "
                    f"{describe(unseen)} rows or tags. A student trained on 'train' can "
                    "never predict them; if one is a typo, fix it and upload again. A job "
                    f"evaluating on {split!r} is refused unless it sets "
                    "dataset.allow_unseen_labels.",
                }
            )
    return out
