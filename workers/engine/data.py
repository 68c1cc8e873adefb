"""JSONL loading, tokenisation once up front, and dynamically padded batches."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from workers.engine.spec import EngineInputError

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass(frozen=True)
class EncodedSplit:
    """A tokenised split; each feature list holds one unpadded row per example."""

    name: str
    features: dict[str, list[list[int]]]
    labels: list[int]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)


def read_jsonl(path: Path, *, num_labels: int, split: str) -> list[Example]:
    """Read ``{"text": str, "label": int}`` lines; errors name the file line to fix."""
    if not path.is_file():
        raise EngineInputError("missing_split", f"the {split} file does not exist")
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{split} line {number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EngineInputError("bad_jsonl", f"{where} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise EngineInputError("bad_jsonl", f"{where} must be a JSON object")
            text, label = row.get("text"), row.get("label")
            if not isinstance(text, str):
                raise EngineInputError("bad_text", f"{where}: 'text' must be a string")
            # bool is an int subclass; a true/false label is a data bug, not class 1/0.
            if not isinstance(label, int) or isinstance(label, bool):
                raise EngineInputError("bad_label", f"{where}: 'label' must be an integer")
            if not 0 <= label < num_labels:
                raise EngineInputError(
                    "label_out_of_range",
                    f"{where}: label {label} is outside 0..{num_labels - 1} "
                    f"({num_labels} label_names)",
                )
            examples.append(Example(text=text, label=label))
    if not examples:
        raise EngineInputError("empty_split", f"the {split} split has no examples")
    return examples


def encode(
    tokenizer: PreTrainedTokenizerBase, examples: list[Example], *, max_length: int, split: str
) -> EncodedSplit:
    texts = [ex.text for ex in examples]
    # No padding here: batches pad to their own longest row, which on CPU is most of
    # the speed for short texts.
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    return EncodedSplit(
        name=split,
        features={k: list(encoded[k]) for k in keys},
        labels=[ex.label for ex in examples],
        texts=texts,
    )


def collate(split: EncodedSplit, indices: list[int], pad_token_id: int) -> Batch:
    length = max(len(split.features["input_ids"][i]) for i in indices)
    batch: Batch = {}
    for key, rows in split.features.items():
        pad = pad_token_id if key == "input_ids" else 0
        padded = [rows[i] + [pad] * (length - len(rows[i])) for i in indices]
        batch[key] = torch.tensor(padded, dtype=torch.long)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(split.features["input_ids"][i]) for i in indices])
        batch["attention_mask"] = (torch.arange(length)[None, :] < lengths[:, None]).long()
    batch["labels"] = torch.tensor([split.labels[i] for i in indices], dtype=torch.long)
    return batch


def iter_batches(
    split: EncodedSplit,
    batch_size: int,
    *,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    by_length: bool = False,
) -> Iterator[Batch]:
    """Shuffled when given a generator; ``by_length`` groups similar lengths (evaluation
    only: order does not matter there and it cuts padding)."""
    if generator is not None:
        order = torch.randperm(len(split), generator=generator).tolist()
    elif by_length:
        ids = split.features["input_ids"]
        order = sorted(range(len(split)), key=lambda i: len(ids[i]))
    else:
        order = list(range(len(split)))
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size], pad_token_id)


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: Batch) -> Batch:
    return {k: v for k, v in batch.items() if k != "labels"}
