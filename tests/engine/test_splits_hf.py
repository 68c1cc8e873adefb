"""Splits are loaded with the Hugging Face ``datasets`` library (issue #4): the same
examples as a line-by-line JSON reader, offline and quiet, and every bad line named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.tiny import NER_LABELS, make_tiny_ner_dataset
from workers.engine import splits
from workers.engine.data import Example, TokenExample, read_jsonl, read_token_jsonl
from workers.engine.spec import EngineInputError

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "a good film",
    "",  # an empty text is a string like any other
    'she said "no" \\ twice',
    "naïve café — 映画 🎬",
    "line\nbreak\tand tab",
]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _lines(path: Path) -> list[dict[str, Any]]:
    """The reference: what the engine's line-by-line reader gave before datasets."""
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def spy_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file ``datasets.load_dataset`` is asked for."""
    datasets = splits._datasets()
    real = datasets.load_dataset
    calls: list[str] = []

    def load(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(kwargs["data_files"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load)
    return calls


def test_a_sequence_split_is_what_the_line_reader_gave(tmp_path: Path, spy_load: list[str]):
    rows = [{"text": t, "label": i % 3} for i, t in enumerate(TEXTS * 4)]
    path = _write(tmp_path / "train.jsonl", rows)
    examples = read_jsonl(path, num_labels=3, split="train")
    assert spy_load == [str(path)]  # read through datasets, not by hand
    expected = [Example(text=r["text"], label=r["label"]) for r in _lines(path)]
    assert examples == expected
    assert all(type(e.label) is int and type(e.text) is str for e in examples)


def test_a_token_split_is_what_the_line_reader_gave(tmp_path: Path, spy_load: list[str]):
    path = make_tiny_ner_dataset(tmp_path / "train.jsonl", n=50, seed=4)
    examples = read_token_jsonl(path, num_labels=len(NER_LABELS), split="train")
    assert spy_load == [str(path)]
    expected = [TokenExample(tuple(r["tokens"]), tuple(r["tags"])) for r in _lines(path)]
    assert examples == expected
    assert len({len(e.tokens) for e in examples}) > 1  # ragged rows survive Arrow


def test_blank_lines_are_skipped_and_do_not_shift_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n\n   \n{"text": "b", "label": 1}\n')
    assert read_jsonl(path, num_labels=2, split="train") == [Example("a", 0), Example("b", 1)]


def test_nothing_is_fetched_and_nothing_is_printed(tmp_path: Path) -> None:
    """In a fresh process, offline by environment, with every socket connect refused and
    recorded: both readers work, nothing connects, nothing lands in the HF cache, and no
    progress bar reaches stderr."""
    seq = _write(tmp_path / "seq.jsonl", [{"text": t, "label": 0} for t in TEXTS])
    tok = make_tiny_ner_dataset(tmp_path / "tok.jsonl", n=10)
    hf_home = tmp_path / "hf-home"
    code = f"""
import json, socket
attempts = []
def refuse(self, address):
    attempts.append(repr(address))
    raise OSError("network access in a test")
socket.socket.connect = refuse
socket.create_connection = lambda *a, **k: refuse(None, a)
from pathlib import Path
from workers.engine.data import read_jsonl, read_token_jsonl
seq = read_jsonl(Path({str(seq)!r}), num_labels=2, split="train")
tok = read_token_jsonl(Path({str(tok)!r}), num_labels={len(NER_LABELS)}, split="eval")
import datasets
print(json.dumps([len(seq), len(tok), attempts, datasets.config.HF_HUB_OFFLINE]))
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(hf_home),
        "HF_DATASETS_CACHE": str(hf_home / "datasets"),
    }
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    n_seq, n_tok, attempts, offline = json.loads(out.stdout.strip().splitlines()[-1])
    assert (n_seq, n_tok) == (len(TEXTS), 10)
    assert attempts == []
    assert offline is True
    assert not [p for p in hf_home.rglob("*") if p.is_file()]
    assert "Generating" not in out.stderr and "examples/s" not in out.stderr, out.stderr


def test_the_hub_is_switched_off_even_without_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = splits._datasets()
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    read_jsonl(_write(tmp_path / "d.jsonl", [{"text": "a", "label": 0}]), num_labels=1, split="t")
    assert datasets.config.HF_HUB_OFFLINE is True


@pytest.mark.parametrize(
    ("third_line", "code"),
    [
        ('{"text": "c", "label": 1', "bad_jsonl"),  # cut short
        ('{"text": "c", "label": 1}}', "bad_jsonl"),
        ('"just a string"', "bad_jsonl"),
        ('{"text": "c", "label": 1.5}', "bad_label"),  # datasets makes the column float
        ('{"text": "c", "label": 1.0}', "bad_label"),
        ('{"text": "c", "label": true}', "bad_label"),
        ('{"text": "c", "label": "1"}', "bad_label"),
        ('{"text": "c"}', "bad_label"),
        ('{"text": 5, "label": 1}', "bad_text"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, third_line: str, code: str) -> None:
    path = tmp_path / "train.jsonl"
    good = [json.dumps({"text": t, "label": 0}) for t in ("a", "b", "d", "e")]
    path.write_text("\n".join([*good[:2], third_line, *good[2:]]) + "\n")
    with pytest.raises(EngineInputError) as info:
        read_jsonl(path, num_labels=2, split="train")
    assert info.value.code == code
    assert info.value.message.startswith("train line 3"), info.value.message


def test_a_bad_tag_is_named(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"tokens": ["bob"], "tags": [1]}\n{"tokens": ["al"], "tags": [false]}\n')
    with pytest.raises(EngineInputError) as info:
        read_token_jsonl(path, num_labels=len(NER_LABELS), split="eval")
    assert (info.value.code, info.value.message) == (
        "bad_label",
        "eval line 2: 'tag' must be an integer",
    )


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "a", "label": 0}\n{"text": "\xff", "label": 0}\n')
    with pytest.raises(EngineInputError) as info:
        read_jsonl(path, num_labels=1, split="train")
    assert info.value.code == "bad_jsonl"
    assert info.value.message.startswith("train line 2 is not valid UTF-8")


def test_past_the_first_block_a_bad_label_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """datasets types the columns from its first block and casts later blocks to that
    type: 1.0 and "1" would both become 1. The line check refuses them all the same."""
    monkeypatch.setattr(splits, "CHUNK_BYTES", 1024)
    rows = [json.dumps({"text": f"row {i}", "label": i % 2}) for i in range(200)]
    for value in ("1.0", '"1"'):
        bad = [*rows[:150], f'{{"text": "late", "label": {value}}}', *rows[150:]]
        path = tmp_path / "train.jsonl"
        path.write_text("\n".join(bad) + "\n")
        assert path.stat().st_size > 4 * splits.CHUNK_BYTES
        with pytest.raises(EngineInputError) as info:
            read_jsonl(path, num_labels=2, split="train")
        assert (info.value.code, info.value.message) == (
            "bad_label",
            "train line 151: 'label' must be an integer",
        )
    # And a clean file of many blocks loads whole.
    path.write_text("\n".join(rows) + "\n")
    assert [e.label for e in read_jsonl(path, num_labels=2, split="train")] == [
        i % 2 for i in range(200)
    ]


@pytest.mark.parametrize(
    "bad_line",
    [
        '{"text": "c", "text": "c2", "label": 1}',  # Python keeps the last key; Arrow refuses
        '{"text": "\\ud800", "label": 1}',  # a lone surrogate
    ],
)
def test_what_json_accepts_and_datasets_does_not_is_named(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n\n' + bad_line + '\n{"text": "b", "label": 1}\n')
    with pytest.raises(EngineInputError) as info:
        read_jsonl(path, num_labels=2, split="train")
    assert info.value.code == "bad_jsonl"
    assert info.value.message.startswith("train line 3 could not be read by the datasets library")


def test_in_a_file_of_many_blocks_datasets_cannot_say_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(splits, "CHUNK_BYTES", 1024)
    rows = [json.dumps({"text": f"row {i}", "label": 0}) for i in range(100)]
    rows[80] = '{"text": "x", "text": "y", "label": 0}'
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(EngineInputError) as info:
        read_jsonl(path, num_labels=1, split="train")
    assert info.value.code == "bad_jsonl"
    # Its row count starts at its block, not at the file: no line rather than a wrong one.
    assert info.value.message.startswith("the train file could not be read by the datasets")


def test_the_loader_checks_column_types_and_row_count(tmp_path: Path) -> None:
    """What load_json_split refuses on its own, whatever the line check let through."""
    path = _write(tmp_path / "d.jsonl", [{"text": "a", "label": 0.5}, {"text": "b", "label": 1}])
    columns = {"text": splits.TEXT, "label": splits.INTEGER}
    with pytest.raises(EngineInputError) as info:
        splits.load_json_split(path, split="train", columns=columns, rows=2)
    assert info.value.code == "bad_jsonl"
    assert "'label'" in info.value.message and "expected integers" in info.value.message
    with pytest.raises(EngineInputError) as info:
        splits.load_json_split(path, split="train", columns={"tokens": splits.WORDS}, rows=2)
    assert "no such column" in info.value.message
    with pytest.raises(EngineInputError) as info:
        splits.load_json_split(path, split="train", columns={"text": splits.TEXT}, rows=3)
    assert "read 2 rows" in info.value.message
    assert splits.load_json_split(path, split="train", columns={"text": splits.TEXT}, rows=2) == {
        "text": ["a", "b"]
    }


def test_an_empty_file_is_an_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text("")
    for read in (
        lambda: read_jsonl(path, num_labels=2, split="eval"),
        lambda: splits.load_json_split(path, split="eval", columns={}, rows=0),
    ):
        with pytest.raises(EngineInputError) as info:
            read()
        assert (info.value.code, info.value.message) == (
            "empty_split",
            "the eval split has no examples",
        )


def test_the_arrow_cache_goes_where_it_is_told(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [{"text": "a", "label": 0}])
    cache = tmp_path / "cache"
    splits.load_json_split(
        path, split="train", columns={"label": splits.INTEGER}, rows=1, cache_dir=cache
    )
    assert list(cache.rglob("*.arrow"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "d.jsonl"]
