"""Uploads in every format: good files become normalised split files, bad ones a 422
that names the line and column, and nothing is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.apiclient import assert_problem, upload_dataset

DATA = Path(__file__).parent.parent / "data"


def _stored(dataset: dict) -> list[dict]:
    from app.datasets.service import split_key
    from app.storage import get_storage

    storage = get_storage()
    rows = []
    for split in dataset["splits"]:
        raw = b"".join(storage.iter_bytes(split_key(dataset["id"], split)))
        rows += [json.loads(line) for line in raw.splitlines()]
    return rows


def _nothing_kept(client, before: int) -> None:
    from app.storage import get_storage

    assert client.get("/v1/datasets").json()["data"] == []
    assert len(get_storage().list("datasets/")) == before


def _keys() -> int:
    from app.storage import get_storage

    return len(get_storage().list("datasets/"))


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- good files -------------------------------------------------------------------------


def test_tsv_sst2_slice(client):
    r = upload_dataset(client, DATA / "sst2_slice.tsv", format="tsv")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == "tsv" and body["task_hint"] == "sequence-classification"
    assert body["num_rows"] == 40 and body["splits"] == {"train": 36, "validation": 4}
    assert body["label_names"] == ["0", "1"]
    assert body["ingest"]["columns"] == {"text": "text", "label": "label"}
    rows = _stored(body)
    assert {"text": "hide new secretions from the parental units ", "label": 0} in rows
    assert {r["label"] for r in rows} == {0, 1}


def _tags(dataset: dict) -> dict[str, list[str]]:
    names = dataset["label_names"]
    return {" ".join(r["tokens"]): [names[t] for t in r["tags"]] for r in _stored(dataset)}


def test_conll_slice_comes_back_iob2(client):
    r = upload_dataset(client, DATA / "conll2003_slice.txt", format="conll", name="ner")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["task_hint"] == "token-classification" and body["format"] == "conll"
    assert body["num_rows"] == 7 and body["split_generated"] is True
    assert body["label_names"] == [
        "O",
        "B-LOC",
        "I-LOC",
        "B-MISC",
        "I-MISC",
        "B-ORG",
        "I-ORG",
        "B-PER",
        "I-PER",
    ]
    assert body["ingest"]["iob1_converted"] > 0
    tags = _tags(body)
    assert not any("-DOCSTART-" in s for s in tags)
    assert tags["EU rejects German call to boycott British lamb ."] == [
        "B-ORG",
        "O",
        "B-MISC",
        "O",
        "O",
        "O",
        "B-MISC",
        "O",
        "O",
    ]
    assert tags["Peter Blackburn"] == ["B-PER", "I-PER"]
    golan = next(s for s in tags if "Golan Heights Israel" in s).split()
    i = golan.index("Golan")
    # IOB1's B-LOC (a second location right after the first) stays a B-LOC
    long = next(s for s in tags if "Golan" in s)
    assert tags[long][i : i + 3] == ["B-LOC", "I-LOC", "B-LOC"]
    for seq in tags.values():  # no entity starts with I- anywhere
        for prev, tag in zip(["O", *seq], seq, strict=False):
            assert not tag.startswith("I-") or prev[2:] == tag[2:], seq


def test_conll_split_and_tag_index(client):
    r = upload_dataset(
        client, DATA / "conll2003_slice.txt", format="conll", split="validation", tag_index="2"
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["splits"] == {"validation": 7} and body["split_generated"] is False
    # column 2 is the chunk tag (I-NP, B-NP, I-VP, ...)
    assert {"B-NP", "I-NP", "B-VP"} <= set(body["label_names"])


def test_csv_with_quotes_bom_and_detected_columns(client, tmp_path: Path):
    lines = ["\ufeffsentence,target,split"]
    for i in range(20):
        text = f'"row {i}, with a comma and a ""quote"""' if i % 5 else f'"row {i}\non two lines"'
        lines.append(f"{text},{'good' if i % 2 else 'bad'},{'validation' if i >= 16 else ''}")
    lines.append(lines[2])  # a duplicate: kept and counted
    r = upload_dataset(client, _write(tmp_path, "d.csv", "\n".join(lines) + "\n"), format="csv")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["ingest"]["columns"] == {"text": "sentence", "label": "target"}
    assert body["ingest"]["duplicate_rows"] == 1
    assert body["splits"] == {"train": 17, "validation": 4} and body["num_rows"] == 21
    assert body["label_names"] == ["bad", "good"]
    rows = _stored(body)
    assert {"text": 'row 1, with a comma and a "quote"', "label": 1} in rows
    assert {"text": "row 0\non two lines", "label": 0} in rows


def test_csv_integer_labels_are_ids(client, tmp_path: Path):
    text = "text,label\n" + "".join(f"row {i},{i % 3 * 5}\n" for i in range(12))
    r = upload_dataset(client, _write(tmp_path, "d.csv", text), format="csv")
    assert r.status_code == 201, r.text
    assert r.json()["label_names"] == [str(i) for i in range(11)]
    assert {row["label"] for row in _stored(r.json())} == {0, 5, 10}


def test_parquet_classification_across_row_groups(client, tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": list(range(30)),
            "content": [f"review {i}" for i in range(30)],
            "labels": [i % 2 for i in range(30)],
            "split": ["train"] * 25 + ["test"] * 5,
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path, row_group_size=7)
    r = upload_dataset(client, path, format="parquet", label_names="neg,pos")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["splits"] == {"train": 25, "test": 5} and body["label_names"] == ["neg", "pos"]
    assert body["ingest"]["columns"] == {"text": "content", "label": "labels"}
    assert {"text": "review 29", "label": 1} in _stored(body)


def test_parquet_token_classification_with_tag_ids(client, tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = "O,B-PER,I-PER,B-LOC,I-LOC"
    sentences = [(["Ada", "Lovelace", "lived", "in", "London"], [1, 2, 0, 0, 3])] * 3 + [
        (["Paris", "Hilton"], [2, 2])  # IOB1: I-PER starts an entity
    ]
    table = pa.table({"tokens": [s[0] for s in sentences], "ner_tags": [s[1] for s in sentences]})
    path = tmp_path / "ner.parquet"
    pq.write_table(table, path)
    r = upload_dataset(client, path, format="parquet", label_names=names)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["task_hint"] == "token-classification"
    assert body["label_names"] == names.split(",")
    assert body["ingest"] == {
        "columns": {"tokens": "tokens", "tags": "ner_tags"},
        "duplicate_rows": 2,
        "iob1_converted": 1,
    }
    assert _tags(body)["Paris Hilton"] == ["B-PER", "I-PER"]


def test_jsonl_token_classification(client, tmp_path: Path):
    rows = [
        {"words": ["John", "Smith", "visited", "Rome"], "labels": ["B-PER", "I-PER", "O", "B-LOC"]},
        {"words": ["Rome", "is", "old"], "labels": ["I-LOC", "O", "O"], "split": "validation"},
        {"words": ["Anna", "left"], "labels": ["B-PER", "O"]},
    ]
    path = _write(tmp_path, "ner.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    r = upload_dataset(client, path)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["task_hint"] == "token-classification"
    assert body["splits"] == {"train": 2, "validation": 1}
    assert body["label_names"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert body["ingest"]["iob1_converted"] == 1
    assert _tags(body)["Rome is old"] == ["B-LOC", "O", "O"]
    assert client.get(f"/v1/datasets/{body['id']}").json()["task_hint"] == "token-classification"


# --- bad files: a 422 naming where, and nothing kept --------------------------------------

CONLL_OK = "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n"

BAD = [
    # (format, content, form, code, needles in detail)
    ("tsv", b"text\tlabel\nok\t1\ncaf\xe9\t0\n", {}, "dataset_invalid", ["line 3", "UTF-8"]),
    ("csv", "text,label\na,1\nb,0,extra\n", {}, "dataset_invalid", ["line 3", "3 fields"]),
    (
        "csv",
        "sentence_text,score\na,1\n",
        {},
        "dataset_invalid",
        ["line 1", "no text column", "'sentence_text', 'score'", "text_column"],
    ),
    ("csv", "text,label\na,1\n", {"label_column": "y"}, "dataset_invalid", ["no column 'y'"]),
    ("csv", "text,label\n", {}, "dataset_empty", ["no rows"]),
    ("csv", "text,text\na,1\n", {}, "dataset_invalid", ["line 1", "repeats column names"]),
    ("csv", "\n\n", {}, "dataset_empty", ["no rows"]),
    ("csv", "text,label\na,1\nb,1\n", {}, "dataset_invalid", ["'label'", "one class"]),
    ("csv", "text,label\na,1\n,0\n", {}, "dataset_invalid", ["line 3, column 'text'"]),
    ("csv", 'text,label\n"a,1\n', {}, "dataset_invalid", ["line 2", "not valid CSV"]),
    (
        "csv",
        "text,label\na,0\nb,5\n",
        {"label_names": "neg,pos"},
        "dataset_invalid",
        ["line 3, column 'label'", "out of range"],
    ),
    ("csv", "text,label\n" + "a" * 140_000 + ",1\n", {}, "dataset_invalid", ["line 2", "longer"]),
    (
        "tsv",
        "text\tlabel\na\t1\n",
        {"task": "token-classification"},
        "dataset_invalid",
        ["tsv file holds sequence-classification"],
    ),
    ("csv", "text,label\na,1\n", {"tag_index": "2"}, "dataset_invalid", ["conll files only"]),
    ("conll", b"", {}, "file_empty", ["empty"]),
    ("conll", "\n-DOCSTART- -X- -X- O\n\n", {}, "dataset_empty", ["no rows"]),
    (
        "conll",
        CONLL_OK + "Peter NNP I-PER\nBlackburn NNP I-NP I-PER\n",
        {},
        "dataset_invalid",
        ["line 6", "broken sentence", "3 columns", "line 3 has 4"],
    ),
    (
        "conll",
        CONLL_OK + "Peter NNP I-NP X-PER\n",
        {},
        "dataset_invalid",
        ["line 6, column 4", "'X-PER'", "IOB2"],
    ),
    ("conll", CONLL_OK + "Peter NNP I-NP B-\n", {}, "dataset_invalid", ["line 6", "'B-'"]),
    ("conll", "EU NNP I-NP O\n\nrejects VBZ I-VP O\n", {}, "dataset_invalid", ["one tag only"]),
    (
        "conll",
        CONLL_OK.encode() + b"caf\xe9 NN I-NP O\n",
        {},
        "dataset_invalid",
        ["line 6", "UTF-8"],
    ),
    ("conll", CONLL_OK, {"tag_index": "9"}, "dataset_invalid", ["tag_index 9", "4 columns"]),
    ("conll", CONLL_OK, {"text_column": "text"}, "dataset_invalid", ["positional"]),
    (
        "jsonl",
        '{"tokens": ["a", "b", "c"], "tags": ["O", "B-X"]}\n',
        {},
        "dataset_invalid",
        ["line 1, column 'tags'", "2 tags for 3 tokens"],
    ),
    (
        "jsonl",
        '{"tokens": ["a", "b"], "tags": ["O", "E-X"]}\n',
        {},
        "dataset_invalid",
        ["line 1, column 'tags'", "tag 2", "'E-X'"],
    ),
    (
        "jsonl",
        '{"tokens": ["a", "b"], "tags": [0, 1]}\n',
        {},
        "dataset_invalid",
        ["tag 1", "label_names"],
    ),
    (
        "jsonl",
        '{"tokens": "a b", "tags": ["O", "B-X"]}\n',
        {},
        "dataset_invalid",
        ["line 1, column 'tokens'", "list"],
    ),
    (
        "jsonl",
        '{"text": "' + "a" * 100_001 + '", "label": 0}\n',
        {},
        "dataset_invalid",
        ["line 1, column 'text'", "more than 100000"],
    ),
    ("parquet", b"PAR1 this is not parquet", {}, "dataset_invalid", ["not a readable Parquet"]),
]


@pytest.mark.parametrize(
    ("fmt", "content", "form", "code", "needles"),
    BAD,
    ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)],
)
def test_bad_files_are_refused_and_nothing_kept(
    client, tmp_path: Path, fmt, content, form, code, needles
):
    before = _keys()
    path = _write(tmp_path, f"bad.{fmt}", content)
    body = assert_problem(upload_dataset(client, path, format=fmt, **form), 422, code)
    for needle in needles:
        assert needle in body["detail"], body["detail"]
    _nothing_kept(client, before)


def test_bad_parquet_rows_name_the_row(client, tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    before = _keys()
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "", "d"], "label": [0, 1, 0, 1]}), path)
    body = assert_problem(upload_dataset(client, path, format="parquet"), 422, "dataset_invalid")
    assert "row 3, column 'text'" in body["detail"], body["detail"]
    assert body["errors"][0]["row"] == 3

    pq.write_table(pa.table({"text": ["a", "b"], "y": [0, 0]}), path)
    body = assert_problem(upload_dataset(client, path, format="parquet"), 422)
    assert "no label column found" in body["detail"] and "'text', 'y'" in body["detail"]
    body = assert_problem(upload_dataset(client, path, format="parquet", label_column="y"), 422)
    assert "one class" in body["detail"]
    _nothing_kept(client, before)


def test_a_failed_store_leaves_nothing(client, app, tmp_path: Path):
    # The file is good; storage fails on the second object (a split), after the source
    # was written: the upload fails and what was written is removed.
    from app.storage import get_storage

    real = get_storage()

    class Flaky:
        def __init__(self) -> None:
            self.puts = 0

        def put_file(self, key, path):
            self.puts += 1
            if self.puts == 2:
                raise OSError("disk full")
            return real.put_file(key, path)

        def __getattr__(self, name):
            return getattr(real, name)

    before = _keys()
    app.dependency_overrides[get_storage] = Flaky
    r = upload_dataset(client, DATA / "conll2003_slice.txt", format="conll")
    assert r.status_code == 500
    del app.dependency_overrides[get_storage]
    _nothing_kept(client, before)
