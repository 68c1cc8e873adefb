"""JSONL loading, tokenisation once up front, and dynamically padded batches.

Two row formats, one per task family (``workers/engine/tasks.py`` picks): sequence
classification reads ``{"text": str, "label": int}``, token classification reads
``{"tokens": [str, ...], "tags": [int, ...]}`` with one tag per word.

A split is checked line by line first (streamed, nothing kept), then loaded with the
Hugging Face ``datasets`` library (``workers/engine/splits.py``). The check reads the
lines itself because ``datasets`` infers the schema from the file's first 10 MB and
casts later rows to it without a word (a label ``1.0`` or ``"1"`` becomes ``1``, a text
``5`` becomes ``"5"``; within the first 10 MB a ``1.5`` turns the whole column to
floats), after which neither the bad value nor its line can be told any more.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from workers.engine import splits
from workers.engine.spec import EngineInputError

Batch = dict[str, torch.Tensor]

# Batch entries that are not model inputs: the targets, and each row's index into its
# split (what per-example caches, such as cached teacher logits, are looked up by).
NON_MODEL_KEYS = ("labels", "index")

# The label of a position that carries none (later word pieces, special tokens,
# padding): PyTorch's cross-entropy default, and what the losses mask out.
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass(frozen=True)
class TokenExample:
    """A sentence as words, with one tag (index into the IOB2 label names) per word."""

    tokens: tuple[str, ...]
    tags: tuple[int, ...]


@dataclass(frozen=True)
class EncodedSplit:
    """A tokenised split; each feature list holds one unpadded row per example.

    ``labels`` holds one int per example for sequence tasks; for token tasks one row
    per example aligned with ``input_ids`` (the word's tag on its first piece,
    ``IGNORE_INDEX`` elsewhere). Token tasks also keep every word's gold tag in
    ``word_tags`` and, in ``labelled_words``, which word each labelled piece starts:
    words cut by truncation (or that tokenise to nothing) still count at scoring.
    """

    name: str
    features: dict[str, list[list[int]]]
    labels: list[Any]
    texts: list[str]
    word_tags: list[list[int]] | None = None
    labelled_words: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)

    @property
    def per_token(self) -> bool:
        return self.word_tags is not None


def _jsonl_objects(path: Path, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each non-blank line's JSON object with ``"<split> line N"`` to name it in errors."""
    if not path.is_file():
        raise EngineInputError("missing_split", f"the {split} file does not exist")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{split} line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EngineInputError("bad_jsonl", f"{where} is not valid UTF-8: {exc}") from exc
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EngineInputError("bad_jsonl", f"{where} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise EngineInputError("bad_jsonl", f"{where} must be a JSON object")
            yield where, row


def _check_label(value: object, *, where: str, field: str, num_labels: int) -> int:
    # bool is an int subclass; a true/false label is a data bug, not class 1/0.
    if not isinstance(value, int) or isinstance(value, bool):
        raise EngineInputError("bad_label", f"{where}: '{field}' must be an integer")
    if not 0 <= value < num_labels:
        raise EngineInputError(
            "label_out_of_range",
            f"{where}: {field} {value} is outside 0..{num_labels - 1} ({num_labels} label_names)",
        )
    return value


def _checked_columns(
    path: Path,
    *,
    split: str,
    check: Callable[[str, dict[str, Any]], None],
    columns: dict[str, Any],
) -> dict[str, list[Any]]:
    """``check(where, row)`` on every line (it raises what the user must fix, naming the
    line), then the split's ``columns`` read in one pass (splits.load_json_split)."""
    rows = 0
    for where, row in _jsonl_objects(path, split):
        check(where, row)
        rows += 1
    if not rows:
        raise EngineInputError("empty_split", f"the {split} split has no examples")
    return splits.load_json_split(path, split=split, columns=columns, rows=rows)


def read_jsonl(path: Path, *, num_labels: int, split: str) -> list[Example]:
    """Read ``{"text": str, "label": int}`` lines; errors name the file line to fix."""

    def check(where: str, row: dict[str, Any]) -> None:
        if not isinstance(row.get("text"), str):
            raise EngineInputError("bad_text", f"{where}: 'text' must be a string")
        _check_label(row.get("label"), where=where, field="label", num_labels=num_labels)

    columns = _checked_columns(
        path, split=split, check=check, columns={"text": splits.TEXT, "label": splits.INTEGER}
    )
    return [
        Example(text=text, label=label)
        for text, label in zip(columns["text"], columns["label"], strict=True)
    ]


def read_token_jsonl(path: Path, *, num_labels: int, split: str) -> list[TokenExample]:
    """Read ``{"tokens": [str, ...], "tags": [int, ...]}`` lines, one tag per token."""

    def check(where: str, row: dict[str, Any]) -> None:
        tokens, tags = row.get("tokens"), row.get("tags")
        words_ok = isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
        if not words_ok or not tokens:
            raise EngineInputError(
                "bad_tokens", f"{where}: 'tokens' must be a non-empty list of strings"
            )
        if not isinstance(tags, list):
            raise EngineInputError("bad_label", f"{where}: 'tags' must be a list of integers")
        if len(tags) != len(tokens):
            raise EngineInputError(
                "tags_length_mismatch",
                f"{where}: {len(tokens)} tokens but {len(tags)} tags (one tag per token)",
            )
        for tag in tags:
            _check_label(tag, where=where, field="tag", num_labels=num_labels)

    columns = _checked_columns(
        path, split=split, check=check, columns={"tokens": splits.WORDS, "tags": splits.TAGS}
    )
    return [
        TokenExample(tokens=tuple(tokens), tags=tuple(tags))
        for tokens, tags in zip(columns["tokens"], columns["tags"], strict=True)
    ]


def _feature_keys(encoded: Any) -> list[str]:
    return [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]


def encode(
    tokenizer: PreTrainedTokenizerBase, examples: list[Example], *, max_length: int, split: str
) -> EncodedSplit:
    texts = [ex.text for ex in examples]
    # No padding here: batches pad to their own longest row, which on CPU is most of
    # the speed for short texts.
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    return EncodedSplit(
        name=split,
        features={k: list(encoded[k]) for k in _feature_keys(encoded)},
        labels=[ex.label for ex in examples],
        texts=texts,
    )


def align_tags(word_ids: list[int | None], tags: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Per-piece labels: a word's tag on its first piece, ``IGNORE_INDEX`` on its other
    pieces and on special tokens. Also the word index behind each labelled piece.

    First piece only (as BERT's NER recipe): every word is then predicted exactly once,
    and a long word does not weigh more in the loss than a short one.
    """
    labels: list[int] = []
    words: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(tags[word])
            words.append(word)
        previous = word
    return labels, words


def encode_words(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[TokenExample],
    *,
    max_length: int,
    split: str,
) -> EncodedSplit:
    if not tokenizer.is_fast:
        raise EngineInputError(
            "tokenizer_not_fast",
            "token classification aligns tags to word pieces, which needs a fast tokenizer: "
            "save the teacher's tokenizer with tokenizer.json",
        )
    words = [list(ex.tokens) for ex in examples]
    encoded = tokenizer(
        words, is_split_into_words=True, truncation=True, max_length=max_length, padding=False
    )
    labels: list[list[int]] = []
    labelled_words: list[list[int]] = []
    for i, ex in enumerate(examples):
        row, starts = align_tags(encoded.word_ids(i), ex.tags)
        labels.append(row)
        labelled_words.append(starts)
    return EncodedSplit(
        name=split,
        features={k: list(encoded[k]) for k in _feature_keys(encoded)},
        labels=labels,
        # Latency inputs are plain texts: the words joined by spaces.
        texts=[" ".join(ex.tokens) for ex in examples],
        word_tags=[list(ex.tags) for ex in examples],
        labelled_words=labelled_words,
    )


def collate(split: EncodedSplit, indices: list[int], pad_token_id: int) -> Batch:
    """The rows ``indices`` of ``split`` padded to their longest, with their labels and,
    as ``index``, their positions in the split."""
    length = max(len(split.features["input_ids"][i]) for i in indices)
    batch: Batch = {}
    for key, rows in split.features.items():
        pad = pad_token_id if key == "input_ids" else 0
        padded = [rows[i] + [pad] * (length - len(rows[i])) for i in indices]
        batch[key] = torch.tensor(padded, dtype=torch.long)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(split.features["input_ids"][i]) for i in indices])
        batch["attention_mask"] = (torch.arange(length)[None, :] < lengths[:, None]).long()
    if split.per_token:
        rows = [split.labels[i] for i in indices]
        padded = [row + [IGNORE_INDEX] * (length - len(row)) for row in rows]
        batch["labels"] = torch.tensor(padded, dtype=torch.long)
    else:
        batch["labels"] = torch.tensor([split.labels[i] for i in indices], dtype=torch.long)
    batch["index"] = torch.tensor(indices, dtype=torch.long)
    return batch


def index_batches(
    split: EncodedSplit,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    by_length: bool = False,
) -> Iterator[list[int]]:
    """The split indices of each batch's rows. Shuffled when given a generator;
    ``by_length`` groups similar lengths (evaluation only: order does not matter there
    and it cuts padding)."""
    if generator is not None:
        order = torch.randperm(len(split), generator=generator).tolist()
    elif by_length:
        ids = split.features["input_ids"]
        order = sorted(range(len(split)), key=lambda i: len(ids[i]))
    else:
        order = list(range(len(split)))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def iter_indexed_batches(
    split: EncodedSplit,
    batch_size: int,
    *,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    by_length: bool = False,
) -> Iterator[tuple[list[int], Batch]]:
    """Batches (``index_batches``' rows, collated) with the split indices of their rows."""
    for indices in index_batches(split, batch_size, generator=generator, by_length=by_length):
        yield indices, collate(split, indices, pad_token_id)


def iter_batches(
    split: EncodedSplit,
    batch_size: int,
    *,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    by_length: bool = False,
) -> Iterator[Batch]:
    for _, batch in iter_indexed_batches(
        split, batch_size, pad_token_id=pad_token_id, generator=generator, by_length=by_length
    ):
        yield batch


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: Batch) -> Batch:
    """What the model's forward takes: the batch without labels and row indices."""
    return {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
