"""Task strategies, registered by name: what differs between sequence and token
classification, so that the rest of the engine does not assume either.

A task knows its row format (reading and encoding), its transformers Auto class and
head, how to turn a batch's logits into predictions, and how to score them. The losses
need no task: they read per-sequence or per-token logits from their shape
(``workers/engine/losses.py``), so importance scoring works on any task unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedTokenizerBase,
)

from app.jobspec import vocabulary
from app.jobspec.registry import Registry
from app.jobspec.vocabulary import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION
from workers.engine.data import (
    IGNORE_INDEX,
    Batch,
    EncodedSplit,
    encode,
    encode_words,
    read_jsonl,
    read_token_jsonl,
)
from workers.engine.metrics import (
    ClassificationScores,
    EntityScores,
    Quality,
    classification_scores,
    entity_scores,
)
from workers.engine.spec import EngineInputError

# vocabulary.TASKS names them (tests/engine/test_registries.py checks the two agree).
TASKS: Registry[type[Task]] = Registry("task", param="task")


class Task(ABC):
    name: ClassVar[str]
    # The score retention compares, a key of the task's quality dict.
    main_metric: ClassVar[str]
    # Which teacher layers a shallower student keeps (a key of plan.LAYER_RULES).
    layer_rule: ClassVar[str]
    # What ``score`` returns; rebuilt from ``dataclasses.asdict`` of it on resume.
    scores_type: ClassVar[type[ClassificationScores] | type[EntityScores]]
    # The class the teacher loads with, the student is exported for, and a user
    # reloads the artifact with.
    auto_class: ClassVar[Any]
    # What config.json's ``architectures`` entries end with when the checkpoint's head
    # was trained for this task (a 9-way sentence head is no 9-tag NER head).
    architecture_suffix: ClassVar[str]
    # safetensors names of the head's last projection in the supported families.
    head_weight_keys: ClassVar[tuple[str, ...]]
    # Model card: the Hub pipeline tag, a noun for the title, and the quality rows of
    # the results table as (row label, quality key).
    pipeline_tag: ClassVar[str]
    model_noun: ClassVar[str]
    quality_rows: ClassVar[tuple[tuple[str, str], ...]]
    # Inputs come as words already split (a tokenizer must mark word starts).
    word_inputs: ClassVar[bool] = False
    # The row format: how a split file is read and checked (data.read_jsonl's
    # signature), and how its examples become model inputs (data.encode's).
    reader: ClassVar[Callable[..., list[Any]]]
    encoder: ClassVar[Callable[..., EncodedSplit]]

    @abstractmethod
    def check_label_names(self, label_names: Sequence[str]) -> None:
        """Refuse label names this task cannot score (EngineInputError)."""

    def read(self, path: Path, *, num_labels: int, split: str) -> list[Any]:
        return type(self).reader(path, num_labels=num_labels, split=split)

    def encode(
        self,
        tokenizer: PreTrainedTokenizerBase,
        examples: list[Any],
        *,
        max_length: int,
        split: str,
    ) -> EncodedSplit:
        return type(self).encoder(tokenizer, examples, max_length=max_length, split=split)

    @abstractmethod
    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """One prediction per batch row, from the model's logits (on CPU)."""

    @abstractmethod
    def score(
        self, predictions: list[Any], split: EncodedSplit, label_names: Sequence[str]
    ) -> Quality:
        """Quality of ``predictions`` (one per example, in split order)."""

    @property
    def main_metric_label(self) -> str:
        return next(label for label, key in self.quality_rows if key == self.main_metric)


@TASKS.register()
class SequenceClassification(Task):
    name = SEQUENCE_CLASSIFICATION
    main_metric = ClassificationScores.main_metric
    # TinyBERT's uniform map, which keeps the top layer (plan.LAYER_RULES).
    layer_rule = "top"
    scores_type = ClassificationScores
    auto_class = AutoModelForSequenceClassification
    architecture_suffix = vocabulary.HEAD_ARCHITECTURE_SUFFIX[SEQUENCE_CLASSIFICATION]
    # BERT's ``classifier``, RoBERTa/ELECTRA's ``classifier.out_proj``, and ``score``
    # for decoder-style heads.
    head_weight_keys = ("classifier.weight", "classifier.out_proj.weight", "score.weight")
    pipeline_tag = "text-classification"
    model_noun = "sequence classifier"
    quality_rows = (("Accuracy", "accuracy"), ("Macro-F1", "macro_f1"))
    reader = staticmethod(read_jsonl)
    encoder = staticmethod(encode)

    def check_label_names(self, label_names: Sequence[str]) -> None:
        pass  # any distinct names will do (validate_spec checks that)

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        return logits.argmax(dim=-1).tolist()

    def score(
        self, predictions: list[Any], split: EncodedSplit, label_names: Sequence[str]
    ) -> Quality:
        return classification_scores(predictions, list(split.labels), label_names)


@TASKS.register()
class TokenClassification(Task):
    """Named-entity recognition and other IOB2 tagging, scored by entity with seqeval."""

    name = TOKEN_CLASSIFICATION
    word_inputs = True
    main_metric = EntityScores.main_metric
    # Tagging needs the lowest layer's lexical features (plan.first_and_last_layers).
    layer_rule = "first_last"
    scores_type = EntityScores
    auto_class = AutoModelForTokenClassification
    architecture_suffix = vocabulary.HEAD_ARCHITECTURE_SUFFIX[TOKEN_CLASSIFICATION]
    # Token heads are a single linear layer in every supported family.
    head_weight_keys = ("classifier.weight", "score.weight")
    pipeline_tag = "token-classification"
    model_noun = "token classifier"
    quality_rows = (
        ("Entity F1", "f1"),
        ("Entity precision", "precision"),
        ("Entity recall", "recall"),
        ("Token accuracy", "token_accuracy"),
    )
    reader = staticmethod(read_token_jsonl)
    encoder = staticmethod(encode_words)

    def check_label_names(self, label_names: Sequence[str]) -> None:
        bad = [
            name
            for name in label_names
            if name != "O" and not (name[:2] in ("B-", "I-") and len(name) > 2)
        ]
        if bad:
            raise EngineInputError(
                "bad_tag_names",
                f"token classification needs IOB2 tag names ('O', 'B-TYPE', 'I-TYPE'); "
                f"not IOB2: {bad[:5]}",
            )
        if "O" not in label_names:
            raise EngineInputError(
                "bad_tag_names", "token classification needs the outside tag 'O' in label_names"
            )

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """Per row, the predicted tag of each labelled (first) piece, in word order."""
        predicted = logits.argmax(dim=-1)
        labelled = batch["labels"] != IGNORE_INDEX
        return [row[keep].tolist() for row, keep in zip(predicted, labelled, strict=True)]

    def score(
        self, predictions: list[Any], split: EncodedSplit, label_names: Sequence[str]
    ) -> Quality:
        if split.word_tags is None or split.labelled_words is None:
            raise ValueError("token classification scores a split encoded by words")
        self.check_label_names(label_names)
        outside = list(label_names).index("O")
        gold: list[list[str]] = []
        predicted: list[list[str]] = []
        for tags, words, row in zip(
            split.word_tags, split.labelled_words, predictions, strict=True
        ):
            # Words the model never saw (cut by truncation) are predicted 'O': they
            # count against recall instead of vanishing from the score.
            full = [outside] * len(tags)
            for word, tag in zip(words, row, strict=True):
                full[word] = tag
            gold.append([label_names[t] for t in tags])
            predicted.append([label_names[t] for t in full])
        return entity_scores(gold, predicted)


def get_task(name: str) -> Task:
    return TASKS.get(name)()
