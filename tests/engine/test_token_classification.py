"""Token classification (NER) through the engine: word-piece alignment, entity scores,
heads, and compress() end to end on a tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from tests.engine.conftest import make_spec
from tests.tiny import (
    NER_LABELS,
    make_tiny_bert,
    make_tiny_dataset,
    make_tiny_ner_bert,
    make_tiny_ner_dataset,
    write_engine_jsonl,
)
from workers.engine.compress import compress
from workers.engine.data import (
    IGNORE_INDEX,
    TokenExample,
    encode_words,
    iter_batches,
    read_token_jsonl,
)
from workers.engine.metrics import entity_scores
from workers.engine.spec import CompressionResult, EngineInputError, PruningSpec
from workers.engine.tasks import TOKEN_CLASSIFICATION, get_task
from workers.engine.teacher import has_trained_head, load_tokenizer

TAG = {name: i for i, name in enumerate(NER_LABELS)}
TOKEN = get_task(TOKEN_CLASSIFICATION)
SEQUENCE = get_task("sequence-classification")


@pytest.fixture(scope="module")
def ner_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_ner_bert(tmp_path_factory.mktemp("ner") / "teacher", num_labels=None)


@pytest.fixture(scope="module")
def ner_splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ner-data")
    train = make_tiny_ner_dataset(root / "train.jsonl", n=240, seed=0)
    eval_ = make_tiny_ner_dataset(root / "eval.jsonl", n=60, seed=1)
    return train, eval_


def test_tags_go_to_the_first_word_piece(ner_teacher: Path) -> None:
    tokenizer = load_tokenizer(ner_teacher, TOKEN)
    example = TokenExample(
        tokens=("johnson", "visited", "berlin", "."),
        tags=(TAG["B-PER"], TAG["O"], TAG["B-LOC"], TAG["O"]),
    )
    split = encode_words(tokenizer, [example], max_length=32, split="eval")
    pieces = tokenizer.convert_ids_to_tokens(split.features["input_ids"][0])
    assert pieces == ["[CLS]", "john", "##son", "visited", "ber", "##lin", ".", "[SEP]"]
    ignore = IGNORE_INDEX
    assert split.labels[0] == [
        ignore,
        TAG["B-PER"],
        ignore,
        TAG["O"],
        TAG["B-LOC"],
        ignore,
        0,
        ignore,
    ]
    assert split.labelled_words == [[0, 1, 2, 3]]
    assert split.word_tags == [[1, 0, 3, 0]]
    assert split.texts == ["johnson visited berlin ."]

    # Truncation keeps [SEP]: the words that no longer fit carry no label.
    short = encode_words(tokenizer, [example], max_length=5, split="eval")
    assert tokenizer.convert_ids_to_tokens(short.features["input_ids"][0]) == [
        "[CLS]", "john", "##son", "visited", "[SEP]",
    ]  # fmt: skip
    assert short.labels[0] == [ignore, TAG["B-PER"], ignore, TAG["O"], ignore]
    assert short.labelled_words == [[0, 1]]


def test_batches_pad_token_labels_with_ignore_index(ner_teacher: Path) -> None:
    tokenizer = load_tokenizer(ner_teacher, TOKEN)
    examples = [
        TokenExample(tokens=("bob",), tags=(TAG["B-PER"],)),
        TokenExample(tokens=("alice", "met", "bob"), tags=(1, 0, 1)),
    ]
    split = encode_words(tokenizer, examples, max_length=16, split="train")
    (batch,) = iter_batches(split, 2, pad_token_id=0)
    assert batch["labels"].tolist() == [[-100, 1, -100, -100, -100], [-100, 1, 0, 1, -100]]
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0]


def test_decode_reads_the_labelled_pieces_in_order() -> None:
    # Two rows of four pieces; argmax per piece is the class index written below.
    classes = torch.tensor([[0, 3, 5, 1], [2, 4, 6, 0]])
    logits = torch.nn.functional.one_hot(classes, len(NER_LABELS)).float()
    labels = torch.tensor([[-100, 0, -100, 0], [-100, 0, 0, -100]])
    assert TOKEN.decode(logits, {"labels": labels}) == [[3, 1], [4, 6]]


def test_seqeval_scores_a_hand_made_case() -> None:
    # One entity right (PER), one of the wrong type (LOC tagged ORG), one missed (ORG).
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG", "O", "O"]]
    scores = entity_scores(gold, predicted)
    # 1 correct of 2 predicted and of 3 gold entities.
    assert scores.precision == pytest.approx(1 / 2)
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # 0.4
    assert scores.token_accuracy == pytest.approx(4 / 6)
    assert scores.per_type == {
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1, "predicted": 1},
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1},
    }
    # ORG was predicted (at the wrong place), LOC never.
    assert scores.never_predicted == ("LOC",)
    assert scores.main == scores.f1
    assert json.loads(json.dumps(scores.as_dict())) == scores.as_dict()


def test_words_the_model_never_saw_count_as_missed(ner_teacher: Path) -> None:
    """A word cut by truncation, or one that tokenises to nothing, is scored as 'O'."""
    tokenizer = load_tokenizer(ner_teacher, TOKEN)
    examples = [
        # "\u200b" has no word piece; "paris" does not fit in max_length 5.
        TokenExample(tokens=("bob", "\u200b", "visited", "new", "paris"), tags=(1, 3, 0, 3, 3)),
    ]
    split = encode_words(tokenizer, examples, max_length=5, split="eval")
    assert split.labelled_words == [[0, 2, 3]]
    # A perfect model on what it saw: B-PER, O, B-LOC.
    scores = TOKEN.score([[1, 0, 3]], split, NER_LABELS)
    # Gold: PER, LOC ("\u200b"), LOC ("new"), LOC ("paris"); predicted PER and LOC ("new").
    assert scores.precision == pytest.approx(1.0)
    assert scores.recall == pytest.approx(2 / 4)
    assert scores.per_type["LOC"]["support"] == 3


def test_token_rows_are_checked_line_by_line(tmp_path: Path) -> None:
    cases = [
        ({"tokens": ["bob", "met"], "tags": [1]}, "tags_length_mismatch"),
        ({"tokens": ["bob"], "tags": [7]}, "label_out_of_range"),
        ({"tokens": ["bob"], "tags": [True]}, "bad_label"),
        ({"tokens": [], "tags": []}, "bad_tokens"),
        ({"tokens": "bob met", "tags": [1, 0]}, "bad_tokens"),
        ({"text": "bob met alice", "label": 0}, "bad_tokens"),
    ]
    for row, code in cases:
        path = tmp_path / "bad.jsonl"
        good = json.dumps({"tokens": ["bob"], "tags": [1]})
        path.write_text(good + "\n" + json.dumps(row) + "\n")
        with pytest.raises(EngineInputError) as info:
            read_token_jsonl(path, num_labels=len(NER_LABELS), split="train")
        assert info.value.code == code, row
        assert "train line 2" in info.value.message


def test_tag_names_must_be_iob2() -> None:
    TOKEN.check_label_names(NER_LABELS)
    for names in (("O", "PER", "LOC"), ("B-PER", "I-PER"), ("O", "B-")):
        with pytest.raises(EngineInputError) as info:
            TOKEN.check_label_names(names)
        assert info.value.code == "bad_tag_names"


def test_a_sentence_head_is_not_a_token_head(tmp_path: Path) -> None:
    seq_head = make_tiny_bert(tmp_path / "seq", num_labels=7)
    token_head = make_tiny_ner_bert(tmp_path / "tok", num_labels=7)
    # Both heads are classifier.weight [7, hidden]; only config.json tells them apart.
    assert has_trained_head(seq_head, 7, SEQUENCE)
    assert not has_trained_head(seq_head, 7, TOKEN)
    assert has_trained_head(token_head, 7, TOKEN)
    assert not has_trained_head(token_head, 7, SEQUENCE)
    assert not has_trained_head(token_head, 5, TOKEN)


@pytest.fixture(scope="module")
def ner_run(
    ner_teacher: Path, ner_splits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> CompressionResult:
    spec = make_spec(
        ner_teacher,
        ner_splits,
        tmp_path_factory.mktemp("ner-run"),
        task=TOKEN_CLASSIFICATION,
        label_names=NER_LABELS,
        pruning=PruningSpec(structured=("layers", "ffn")),
    )
    return compress(spec)


def test_compress_token_classification_end_to_end(ner_run: CompressionResult) -> None:
    metrics = ner_run.metrics
    assert metrics["main_metric"] == "f1"
    assert metrics["teacher_finetuned"] is True
    for side in ("teacher", "student"):
        part = metrics[side]
        assert set(part["per_type"]) == {"PER", "LOC", "ORG"}
        for row in part["per_type"].values():
            assert 0.0 <= row["f1"] <= 1.0 and row["support"] > 0
        assert "accuracy" not in part  # token accuracy is not the headline
        assert 0.0 <= part["token_accuracy"] <= 1.0
    # Entities are word identities in the tiny data: learnable to near perfection.
    assert metrics["teacher"]["f1"] >= 0.9
    assert metrics["student"]["f1"] >= 0.8
    assert metrics["retention"] == pytest.approx(
        metrics["student"]["f1"] / metrics["teacher"]["f1"]
    )
    assert metrics["student"]["num_layers"] < metrics["teacher"]["num_layers"]
    assert metrics["pruning_plan"]["importance"] == "taylor"  # FFN neurons ranked on NER
    assert json.loads(json.dumps(metrics)) == metrics


def test_ner_student_loads_as_token_classifier(ner_run: CompressionResult) -> None:
    paths = {a.name: a.path for a in ner_run.artifacts}
    model = AutoModelForTokenClassification.from_pretrained(paths["model"], use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(paths["model"])
    assert model.config.id2label == dict(enumerate(NER_LABELS))
    assert model.config.label2id == {name: i for i, name in enumerate(NER_LABELS)}
    inputs = tokenizer([["alice", "visited", "berlin", "."]], is_split_into_words=True,
                       return_tensors="pt")  # fmt: skip
    with torch.inference_mode():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(NER_LABELS))

    report = json.loads(paths["report"].read_text())
    assert report["metrics"] == ner_run.metrics
    assert report["spec"]["task"] == TOKEN_CLASSIFICATION
    assert report["export"]["reload_max_abs_logit_diff"] <= 1e-4
    card = paths["model-card"].read_text()
    assert "pipeline_tag: token-classification" in card
    assert "| Entity F1 |" in card and "| Token accuracy |" in card
    assert "Entity F1 retention" in card
    for entity_type in ("PER", "LOC", "ORG"):
        assert f"| {entity_type} |" in card
    assert "AutoModelForTokenClassification.from_pretrained" in card


def test_sequence_rows_given_to_a_token_job_name_the_line(
    ner_teacher: Path, tmp_path: Path
) -> None:
    source = make_tiny_dataset(tmp_path / "src.jsonl", n=20)
    train, eval_ = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    write_engine_jsonl(source, train, eval_, ("negative", "positive"))
    spec = make_spec(
        ner_teacher, (train, eval_), tmp_path, task=TOKEN_CLASSIFICATION, label_names=NER_LABELS
    )
    with pytest.raises(EngineInputError) as info:
        compress(spec)
    assert info.value.code == "bad_tokens"
    assert "train line 1" in info.value.message


def test_token_students_keep_the_first_and_last_layers(
    ner_teacher: Path, ner_splits: tuple[Path, Path], tmp_path: Path
) -> None:
    """Tagging keeps the lowest layer (plan.first_and_last_layers): 2 of 4 is [0, 3],
    where sentence classification keeps [1, 3]."""
    spec = make_spec(
        ner_teacher,
        ner_splits,
        tmp_path,
        task=TOKEN_CLASSIFICATION,
        label_names=NER_LABELS,
        pruning=PruningSpec(structured=("layers",)),
        training={"epochs": 1},
    )
    assert compress(spec).metrics["layer_map"] == [0, 3]
