"""JSONL reading, dynamic padding, quality metrics and latency bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.tiny import make_tiny_bert, make_tiny_dataset
from workers.engine.data import encode, iter_batches, model_inputs, read_jsonl
from workers.engine.evaluate import cpu_latency_ms, predict, quality
from workers.engine.metrics import ClassificationScores, accuracy, macro_f1
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import NullCallback
from workers.engine.tasks import get_task


def test_tiny_dataset_is_deterministic_and_balanced(tmp_path: Path) -> None:
    a = make_tiny_dataset(tmp_path / "a.jsonl", n=100, seed=3).read_text()
    b = make_tiny_dataset(tmp_path / "b.jsonl", n=100, seed=3).read_text()
    assert a == b
    labels = [json.loads(line)["label"] for line in a.splitlines()]
    assert set(labels) == {"negative", "positive"}
    assert 30 <= labels.count("positive") <= 70


def test_batches_pad_to_their_longest_row_and_truncate(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    path = tmp_path / "d.jsonl"
    texts = ["good", "the movie was good", " ".join(["film"] * 50)]
    path.write_text("".join(json.dumps({"text": t, "label": 1}) + "\n" for t in texts))
    examples = read_jsonl(path, num_labels=2, split="train")
    split = encode(tokenizer, examples, max_length=16, split="train")
    first, second = iter_batches(split, 2, pad_token_id=0)
    assert first["input_ids"].shape == (2, 6)  # [CLS] the movie was good [SEP]
    assert first["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0]
    assert second["input_ids"].shape == (1, 16)  # truncated to max_length
    assert second["labels"].tolist() == [1]


def test_shuffling_is_seeded(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    data = make_tiny_dataset(tmp_path / "d.jsonl", n=40)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"text": r["text"], "label": 0}) + "\n" for r in rows))
    examples = read_jsonl(path, num_labels=2, split="train")
    split = encode(tokenizer, examples, max_length=32, split="train")

    def first_ids(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        batch = next(iter_batches(split, 8, pad_token_id=0, generator=gen))
        return batch["input_ids"][:, 1].tolist()

    assert first_ids(1) == first_ids(1)
    assert first_ids(1) != first_ids(2)


def test_batches_carry_the_split_index_of_each_row(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    path = tmp_path / "d.jsonl"
    texts = [f"{'good ' * (i % 5 + 1)}film" for i in range(20)]
    path.write_text(
        "".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts))
    )
    split = encode(
        tokenizer, read_jsonl(path, num_labels=2, split="train"), max_length=16, split="t"
    )
    gen = torch.Generator().manual_seed(3)
    seen: list[int] = []
    for batch in iter_batches(split, 6, pad_token_id=0, generator=gen):
        for row, i in enumerate(batch["index"].tolist()):
            ids = split.features["input_ids"][i]
            assert batch["input_ids"][row, : len(ids)].tolist() == ids
            assert batch["labels"][row].item() == split.labels[i]
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(20)) and seen != list(range(20))  # shuffled, all once
    # The model never sees the index or the labels.
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "token_type_ids"}


def test_accuracy_and_macro_f1() -> None:
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 1, 0]
    assert accuracy(preds, labels) == pytest.approx(4 / 6)
    # class 0: tp2 fp1 fn1 -> 2/3; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp0 fn1 -> 0
    assert macro_f1(preds, labels) == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert macro_f1([1, 1], [1, 1]) == 1.0
    assert accuracy([], []) == 0.0


def test_latency_restores_thread_count(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m", num_labels=2)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    before = torch.get_num_threads()
    result = cpu_latency_ms(
        {"a": model, "b": model},
        tokenizer,
        ["a good film ."],
        seq_len=16,
        threads=2 if before == 1 else 1,
        progress=Progress(NullCallback()),
    )
    assert torch.get_num_threads() == before
    assert set(result) == {"a", "b"}
    assert all(v > 0 for per_model in result.values() for v in per_model.values())
    assert set(result["a"]) == {1, 32}


class _LengthModel(nn.Module):
    """Predicts class (real length mod 3): a known answer for every row."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object):
        length = attention_mask.sum(dim=-1)
        return SimpleNamespace(logits=F.one_hot(length % 3, 3).float())


def test_predictions_come_back_in_split_order(tmp_path: Path) -> None:
    """Evaluation batches rows by length; each prediction must still land on its row."""
    tokenizer = AutoTokenizer.from_pretrained(make_tiny_bert(tmp_path / "m"))
    texts = ["the plot " * n + "good" for n in (5, 1, 3, 0, 4, 2, 6)]
    labels = [0, 1, 2, 0, 0, 1, 2]
    path = tmp_path / "d.jsonl"
    rows = [json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    split = encode(
        tokenizer, read_jsonl(path, num_labels=3, split="eval"), max_length=32, split="eval"
    )
    expected = [len(ids) % 3 for ids in split.features["input_ids"]]
    assert len(set(expected)) == 3 and expected != sorted(expected)
    common = {
        "batch_size": 3,
        "pad_token_id": 0,
        "runtime": Runtime(torch.device("cpu")),
        "progress": Progress(NullCallback()),
    }
    model = _LengthModel()
    task = get_task("sequence-classification")
    assert predict(model, split, task=task, **common) == expected  # type: ignore[arg-type]
    scores = quality(model, split, **common)  # type: ignore[arg-type]
    assert isinstance(scores, ClassificationScores)
    assert scores.accuracy == accuracy(expected, labels)
    assert scores.macro_f1 == macro_f1(expected, labels)
    report = scores.as_dict()
    assert (report["accuracy"], report["macro_f1"]) == (scores.accuracy, scores.macro_f1)
    # Without label names the classes go by their ids.
    assert {name: row["support"] for name, row in report["per_class"].items()} == {
        "0": 3,
        "1": 2,
        "2": 2,
    }
    assert sum(row["predicted"] for row in report["per_class"].values()) == len(labels)
    assert report["never_predicted"] == []
