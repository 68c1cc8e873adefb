"""What POST /v1/jobs checks against the teacher, the dataset and the engine's
vocabulary before it queues anything, and how the request reaches the engine spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.apiclient import assert_problem, job_body, upload_model
from tests.conftest import pack_tar


def _job_count(tenant: str) -> int:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant))


def _refused(client, tenant: str, body: dict[str, Any], code: str, param: str) -> str:
    problem = assert_problem(client.post("/v1/jobs", json=body), 422, code, param)
    assert _job_count(tenant) == 0
    return problem["detail"]


def _accepted(client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    # No worker runs in these tests: cancel it so no later test meets it queued.
    assert client.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 202
    return r.json()


def _set_task_hint(dataset_id: str, hint: str) -> None:
    from app.datasets.tables import Dataset
    from app.db import session_scope

    # Token-classification uploads (CoNLL, tokens/tags) set this; the check reads the row.
    with session_scope() as s:
        s.get(Dataset, dataset_id).task_hint = hint
        s.commit()


@pytest.fixture(scope="module")
def teacher_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny BERTs with a 2- and a 3-label sequence head, and a 2-label token head."""
    from tests.tiny import make_tiny_bert

    root = tmp_path_factory.mktemp("heads")
    archives = {}
    for name, labels in (("seq2", 2), ("seq3", 3), ("tok2", 2)):
        folder = make_tiny_bert(root / name, num_labels=labels)
        if name == "tok2":
            # BertForTokenClassification stores its head as `classifier.*` too; only
            # the architecture tells the two apart.
            config = json.loads((folder / "config.json").read_text())
            config["architectures"] = ["BertForTokenClassification"]
            (folder / "config.json").write_text(json.dumps(config))
        archives[name] = pack_tar(folder, root / f"{name}.tar.gz")
    return archives


def _teacher(client, teacher_archives: dict[str, Path], name: str) -> dict[str, Any]:
    r = upload_model(client, teacher_archives[name])
    assert r.status_code == 201, r.text
    return r.json()


# ------------------------------------------------------------ task and dataset agree


def test_token_job_on_a_text_label_dataset(client, tenant, model_id, dataset_id):
    body = job_body(model_id, dataset_id, task="token-classification")
    detail = _refused(client, tenant, body, "task_dataset_mismatch", "task")
    assert "texts with one label each" in detail and "'sequence-classification'" in detail


def test_sequence_job_on_a_token_dataset(client, tenant, model_id, dataset_id):
    _set_task_hint(dataset_id, "token-classification")
    detail = _refused(
        client, tenant, job_body(model_id, dataset_id), "task_dataset_mismatch", "task"
    )
    assert "tokens with one tag each" in detail and "'token-classification'" in detail
    job = _accepted(client, job_body(model_id, dataset_id, task="token-classification"))
    assert job["request"]["task"] == "token-classification"


def test_train_split_must_exist(client, tenant, model_id, dataset_id):
    body = job_body(model_id, dataset_id, dataset={"dataset_id": dataset_id, "train_split": "tr"})
    detail = _refused(client, tenant, body, "split_not_found", "dataset.train_split")
    assert "train, validation" in detail


# ------------------------------------------------------------ the teacher's head


def test_model_reports_its_head(client, teacher_archives):
    assert _teacher(client, teacher_archives, "seq3")["head_task"] == "sequence-classification"
    tok = _teacher(client, teacher_archives, "tok2")
    assert tok["head_task"] == "token-classification" and tok["num_labels"] == 2


def test_head_for_another_label_count_is_retrained_or_refused(
    client, tenant, teacher_archives, dataset_id
):
    teacher = _teacher(client, teacher_archives, "seq3")
    no_training = job_body(teacher["id"], dataset_id, training={"teacher_epochs": 0})
    detail = _refused(
        client, tenant, no_training, "teacher_head_mismatch", "training.teacher_epochs"
    )
    assert "head for 3 labels and the dataset has 2" in detail
    assert "teacher_epochs to at least 1" in detail
    # the default (3 epochs) retrains the head
    _accepted(client, job_body(teacher["id"], dataset_id))


def test_head_of_another_kind_is_retrained_or_refused(client, tenant, teacher_archives, dataset_id):
    teacher = _teacher(client, teacher_archives, "tok2")  # same label count, wrong kind
    no_training = job_body(teacher["id"], dataset_id, training={"teacher_epochs": 0})
    detail = _refused(
        client, tenant, no_training, "teacher_head_mismatch", "training.teacher_epochs"
    )
    assert "token-classification head (BertForTokenClassification)" in detail
    _accepted(client, job_body(teacher["id"], dataset_id, training={"teacher_epochs": 1}))


def test_headless_teacher_needs_teacher_epochs(client, tenant, model_id, dataset_id):
    body = job_body(model_id, dataset_id, training={"teacher_epochs": 0})
    detail = _refused(client, tenant, body, "teacher_head_mismatch", "training.teacher_epochs")
    assert "has no task head" in detail


def test_fitting_head_needs_no_teacher_training(client, teacher_archives, dataset_id):
    teacher = _teacher(client, teacher_archives, "seq2")
    job = _accepted(client, job_body(teacher["id"], dataset_id, training={"teacher_epochs": 0}))
    assert job["request"]["training"]["teacher_epochs"] == 0


# ------------------------------------------------------------ not supported yet


@pytest.mark.parametrize(
    ("patch", "param", "supported"),
    [
        ({"pruning": {"structured": ["ffn"]}}, "pruning.structured", '"layers"'),
    ],
)
def test_not_supported_yet(client, tenant, model_id, dataset_id, patch, param, supported):
    detail = _refused(
        client, tenant, job_body(model_id, dataset_id, **patch), "not_supported_yet", param
    )
    assert supported in detail, detail


@pytest.mark.parametrize(
    "target",
    [{"sparsity": 0.8}, {"sparsity": 0.5, "pattern": "2:4"}],
)
def test_sparsity_targets_are_accepted(client, model_id, dataset_id, target):
    job = _accepted(client, job_body(model_id, dataset_id, target=target))
    assert job["request"]["target"]["sparsity"] == target["sparsity"]
    assert job["request"]["target"]["pattern"] == target.get("pattern", "unstructured")


def test_a_speedup_target_is_accepted_and_reaches_the_engine(client, model_id, dataset_id):
    from workers.request_spec import engine_sections

    body = job_body(
        model_id, dataset_id, target={"speedup": 2.5}, pruning={"structured": ["layers", "ffn"]}
    )
    job = _accepted(client, body)
    assert job["request"]["target"]["speedup"] == 2.5
    assert engine_sections(job["request"])["target"].speedup == 2.5


def test_a_speedup_target_is_refused_where_it_cannot_be_planned(
    client, tenant, model_id, dataset_id
):
    joint = job_body(model_id, dataset_id, target={"speedup": 2.0}, strategy="joint")
    detail = _refused(client, tenant, joint, "not_supported_yet", "strategy")
    assert "'prune_then_distill'" in detail
    # The tiny teacher has 4 layers: whole layers give 4x its layer FLOPs at most.
    too_fast = job_body(
        model_id, dataset_id, target={"speedup": 4.5}, pruning={"structured": ["layers"]}
    )
    detail = _refused(client, tenant, too_fast, "target_unreachable", "target.speedup")
    assert "at most 4.00" in detail and "'ffn'" in detail


def test_a_sweep_is_accepted_and_what_it_cannot_time_or_keep_is_refused(
    client, tenant, model_id, dataset_id
):
    # Any batch size; rows no longer than the teacher's position table (128 here).
    too_long = job_body(model_id, dataset_id, target={"max_latency_ms": 5, "seq_len": 256})
    detail = _refused(client, tenant, too_long, "validation_error", "target.seq_len")
    assert "at most 128 tokens" in detail
    # The children take the teacher from the cache the sweep fine-tunes it into.
    no_cache = job_body(
        model_id, dataset_id, target={"min_retention": 0.99}, training={"teacher_cache": False}
    )
    _refused(client, tenant, no_cache, "validation_error", "training.teacher_cache")
    # What the request must change anyway is said first.
    for target, code, param in [
        ({"min_retention": 1.5}, "validation_error", "target.min_retention"),
        ({"max_latency_ms": 0}, "validation_error", "target.max_latency_ms"),
        ({"min_retention": 0.99, "budget": {"candidates": 1}}, "validation_error", None),
        ({"min_retention": 0.99, "batch_size": 4}, "validation_error", None),
        (
            {"min_retention": 0.99, "runtime": "onnxruntime-int8"},
            "speedup_runtime_not_exported",
            "target.runtime",
        ),
    ]:
        _refused(client, tenant, job_body(model_id, dataset_id, target=target), code, param)
    job = _accepted(client, job_body(model_id, dataset_id, target={"min_retention": 0.99}))
    assert job["request"]["target"]["budget"] == {"candidates": 6, "max_seconds": None}
    assert job["parent_id"] is None
    fits = _accepted(client, job_body(model_id, dataset_id, target={"max_latency_ms": 5}))
    assert fits["request"]["target"]["batch_size"] == 1
    served = {"max_latency_ms": 5, "batch_size": 4, "seq_len": 64}
    target = _accepted(client, job_body(model_id, dataset_id, target=served))["request"]["target"]
    assert (target["batch_size"], target["seq_len"]) == (4, 64)


def test_capabilities_drive_the_checks(client, tenant, model_id, dataset_id, monkeypatch):
    from app.jobspec import vocabulary

    # What the engine enables is accepted with no change to the API.
    monkeypatch.setattr(vocabulary, "STRATEGIES", ("prune_then_distill", "joint"))
    monkeypatch.setattr(vocabulary, "TARGETS", ("params_ratio", "sparsity"))
    monkeypatch.setattr(vocabulary, "SPARSITY_PATTERNS", ("unstructured",))
    monkeypatch.setattr(vocabulary, "CACHE_TEACHER_LOGITS", True)
    _accepted(client, job_body(model_id, dataset_id, strategy="joint"))
    logits_only = {"hidden_states": False}
    _accepted(
        client,
        job_body(
            model_id,
            dataset_id,
            training={"cache_teacher_logits": True},
            distillation=logits_only,
        ),
    )
    job = _accepted(client, job_body(model_id, dataset_id, target={"sparsity": 0.8}))
    assert job["request"]["target"] == {
        "params_ratio": None,
        "sparsity": 0.8,
        "pattern": "unstructured",
        "speedup": None,
        "min_retention": None,
        "max_latency_ms": None,
        "batch_size": None,
        "seq_len": None,
        "budget": None,
        "runtime": None,
    }
    speedup = job_body(model_id, dataset_id, target={"speedup": 2.0})
    assert_problem(
        client.post("/v1/jobs", json=speedup), 422, "not_supported_yet", "target.speedup"
    )
    two_four = job_body(model_id, dataset_id, target={"sparsity": 0.5, "pattern": "2:4"})
    problem = assert_problem(
        client.post("/v1/jobs", json=two_four), 422, "not_supported_yet", "target.pattern"
    )
    assert "'unstructured'" in problem["detail"]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"training": {"checkpoint_every_steps": 0}}, "training.checkpoint_every_steps"),
        ({"training": {"teacher_learning_rate": 0}}, "training.teacher_learning_rate"),
        ({"training": {"teacher_epochs": -1}}, "training.teacher_epochs"),
        ({"pruning": {"importance": "random"}}, "pruning.importance"),
        ({"target": {"sparsity": 0.5, "pattern": "4:8"}}, "target.pattern"),
    ],
)
def test_field_values(client, tenant, model_id, dataset_id, patch, param):
    body = job_body(model_id, dataset_id, **patch)
    assert_problem(client.post("/v1/jobs", json=body), 422, "validation_error", param)
    assert _job_count(tenant) == 0


# ------------------------------------------------------------ into the engine spec


def test_every_request_field_reaches_the_engine_spec(
    client, teacher_archives, dataset_id, tmp_path: Path
):
    from app.datasets.tables import Dataset
    from app.db import session_scope
    from app.jobs.tables import Job
    from app.models.tables import Model
    from app.settings import get_settings
    from app.storage import get_storage
    from workers.inputs import build_spec

    teacher = _teacher(client, teacher_archives, "seq2")
    request = job_body(
        teacher["id"],
        dataset_id,
        target={"params_ratio": 0.6},
        distillation={"temperature": 3.0, "alpha": 0.25, "hidden_states": False},
        pruning={"structured": ["layers", "ffn"], "importance": "magnitude"},
        training={
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-4,
            "max_seq_length": 64,
            "seed": 7,
            "teacher_epochs": 0,
            "teacher_learning_rate": 2e-4,
            "checkpoint_every_steps": 11,
        },
    )
    job_id = _accepted(client, request)["id"]

    def spec_of(req: dict[str, Any] | None, workdir: Path):
        workdir.mkdir()
        with session_scope() as s:
            job = s.get(Job, job_id)
            if req is not None:
                s.expunge(job)
                job.request = req
            return build_spec(
                job=job,
                teacher=s.get(Model, teacher["id"]),
                dataset=s.get(Dataset, dataset_id),
                storage=get_storage(),
                settings=get_settings(),
                workdir=workdir,
            )

    spec = spec_of(None, tmp_path / "a")
    assert spec.target.params_ratio == 0.6
    assert (spec.distillation.temperature, spec.distillation.alpha) == (3.0, 0.25)
    assert spec.distillation.hidden_states is False
    assert spec.pruning.structured == ("layers", "ffn")
    assert spec.pruning.importance == "magnitude"
    tr = spec.training
    assert (tr.epochs, tr.batch_size, tr.learning_rate, tr.max_seq_length, tr.seed) == (
        2,
        8,
        1e-4,
        64,
        7,
    )
    assert (tr.teacher_epochs, tr.teacher_learning_rate) == (0, 2e-4)
    assert (tr.checkpoint_every_steps, tr.cache_teacher_logits) == (11, False)
    assert spec.label_names == ("negative", "positive")

    # A job stored before these fields existed runs with the engine's defaults.
    with session_scope() as s:
        old = json.loads(json.dumps(s.get(Job, job_id).request))
    for section, fields in (
        ("training", ("teacher_learning_rate", "checkpoint_every_steps", "cache_teacher_logits")),
        ("pruning", ("importance",)),
    ):
        for f in fields:
            del old[section][f]
    from workers.engine.spec import PruningSpec, TrainingSpec

    legacy = spec_of(old, tmp_path / "b")
    assert legacy.training.teacher_learning_rate == TrainingSpec.teacher_learning_rate
    assert legacy.training.checkpoint_every_steps == TrainingSpec.checkpoint_every_steps
    assert legacy.pruning.importance == PruningSpec.importance
    assert legacy.training.epochs == 2


def test_api_defaults_are_the_engine_defaults():
    from app.jobs.schemas import Distillation, Pruning, Training
    from workers.engine.spec import DistillationSpec, PruningSpec, TrainingSpec

    for api, engine in ((Training, TrainingSpec), (Distillation, DistillationSpec)):
        assert api().model_dump() == {k: getattr(engine(), k) for k in api.model_fields}
    pruning = Pruning().model_dump()
    assert tuple(pruning.pop("structured")) == PruningSpec().structured
    assert pruning == {k: getattr(PruningSpec(), k) for k in pruning}


def test_width_pruning_is_accepted_and_reaches_smaller_targets(client, model_id, dataset_id):
    _accepted(client, job_body(model_id, dataset_id, pruning={"structured": ["layers", "hidden"]}))
    layers_only = client.post(
        "/v1/jobs", json=job_body(model_id, dataset_id, target={"params_ratio": 0.05})
    )
    problem = assert_problem(layers_only, 422, "target_unreachable", "target.params_ratio")
    floor = float(problem["detail"].rsplit(">= ", 1)[1].rstrip("."))
    wide = job_body(
        model_id,
        dataset_id,
        target={"params_ratio": floor * 0.9},
        pruning={"structured": ["layers", "ffn", "hidden"]},
    )
    _accepted(client, wide)  # narrower widths go below what whole layers can reach


def test_params_ratio_is_below_1_in_the_api_as_in_the_engine(client, model_id, dataset_id):
    # One range (app/jobspec/values.py): 1 would be a student as large as its teacher.
    whole = job_body(model_id, dataset_id, target={"params_ratio": 1.0})
    assert_problem(
        client.post("/v1/jobs", json=whole), 422, "validation_error", "target.params_ratio"
    )
    _accepted(client, job_body(model_id, dataset_id, target={"params_ratio": 0.99}))
