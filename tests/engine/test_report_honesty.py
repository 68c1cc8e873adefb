"""What a report must not let a reader miss, on a task no benchmark uses (six intents,
one of them rare): a class the student never predicts, retention on macro-F1 beside
accuracy, and a speed target overshot for want of a step in between; and the defaults a
job gets when it names only a target."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from sklearn.metrics import f1_score

from app.jobspec import plan, speed_steps, vocabulary
from app.jobspec.speed_plan import SpeedPlan
from tests.engine.conftest import LABELS, RecordingCallback, make_spec
from workers.engine import distill
from workers.engine.data import encode, read_jsonl
from workers.engine.metrics import classification_scores, entity_scores, macro_f1
from workers.engine.progress import Progress
from workers.engine.prune_layers import build_student
from workers.engine.report import report_warnings, run_metrics
from workers.engine.runtime import Runtime
from workers.engine.spec import (
    DEEP_CUT_BELOW,
    DEEP_CUT_LEARNING_RATE,
    STUDENT_LEARNING_RATE,
    DistillationSpec,
    EngineInputError,
    PruningSpec,
    TrainingSpec,
    student_learning_rate,
)
from workers.engine.tasks import get_task
from workers.engine.teacher import load_teacher
from workers.engine.validate import validate_spec

INTENTS = ("billing", "shipping", "returns", "account", "technical", "refund")
RARE = INTENTS.index("refund")
# A MiniLM-L6-shaped teacher (config only: nothing here builds it).
MINILM = {
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "intermediate_size": 1536,
    "num_attention_heads": 12,
}


def _intent_eval(seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Gold labels of an eval split (9 rows of the rare intent among 300), a teacher that
    errs at random on 5% of rows, and a student as good on the common intents that
    gives every rare row (and every rare guess) to "billing"."""
    rng = random.Random(seed)
    gold = [RARE] * 9 + [rng.randrange(RARE) for _ in range(291)]
    rng.shuffle(gold)
    teacher = [y if rng.random() > 0.05 else rng.randrange(len(INTENTS)) for y in gold]
    student = [0 if RARE in (y, p) else p for y, p in zip(gold, teacher, strict=True)]
    return gold, teacher, student


def test_per_class_scores_name_the_class_never_predicted() -> None:
    gold, _, student = _intent_eval()
    scores = classification_scores(student, gold, INTENTS)
    assert scores.never_predicted == ("refund",)
    rare = scores.per_class["refund"]
    assert (rare["support"], rare["predicted"], rare["recall"], rare["f1"]) == (9, 0, 0.0, 0.0)
    billing = scores.per_class["billing"]
    assert billing["predicted"] == sum(p == 0 for p in student)
    assert billing["support"] == sum(y == 0 for y in gold)
    assert billing["precision"] == pytest.approx(
        sum(p == y == 0 for p, y in zip(student, gold, strict=True)) / billing["predicted"]
    )
    # Accuracy barely notices 9 rows of 300; macro-F1 loses a sixth of its classes.
    assert scores.accuracy > 0.9
    assert scores.macro_f1 < 5 / 6
    assert scores.as_dict()["never_predicted"] == ["refund"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_per_class_agree_with_sklearn(seed: int) -> None:
    rng = random.Random(seed)
    gold = [rng.randrange(6) for _ in range(200)]
    predicted = [y if rng.random() < 0.6 else rng.randrange(5) for y in gold]
    classes = sorted(set(gold) | set(predicted))
    expected = f1_score(gold, predicted, labels=classes, average="macro", zero_division=0)
    assert macro_f1(predicted, gold) == pytest.approx(expected)
    scores = classification_scores(predicted, gold, INTENTS)
    per_f1 = f1_score(gold, predicted, labels=classes, average=None, zero_division=0)
    for c, f1 in zip(classes, per_f1, strict=True):
        assert scores.per_class[INTENTS[c]]["f1"] == pytest.approx(f1)


def test_a_class_absent_from_the_eval_split_is_not_called_missing() -> None:
    scores = classification_scores([0, 1, 1, 0], [0, 1, 1, 1], INTENTS)
    assert scores.never_predicted == ()
    assert set(scores.per_class) == {"billing", "shipping"}


def test_the_task_scores_by_label_name() -> None:
    gold, _, student = _intent_eval(seed=3)
    split = SimpleNamespace(labels=gold)
    scores = get_task("sequence-classification").score(student, split, INTENTS)
    assert scores.never_predicted == ("refund",)
    assert scores.main == scores.accuracy


def test_entity_types_never_predicted_are_named() -> None:
    gold = [["B-PER", "O", "B-MISC", "I-MISC"], ["B-LOC", "O"], ["O", "B-MISC"]]
    predicted = [["B-PER", "O", "O", "O"], ["B-LOC", "B-PER"], ["O", "O"]]
    scores = entity_scores(gold, predicted)
    assert scores.never_predicted == ("MISC",)
    assert scores.per_type["MISC"]["support"] == 2 and scores.per_type["MISC"]["predicted"] == 0
    assert scores.per_type["PER"]["predicted"] == 2  # one right, one wrong


def _part(scores: Any, ms: float) -> dict[str, Any]:
    return {
        **scores.as_dict(),
        "num_parameters": 1000,
        "non_embedding_parameters": 800,
        "latency_ms_cpu_bs1": ms,
        "latency_ms_cpu_bs32": ms * 20,
        "flops_per_token": 100,
    }


def _metrics(spec: Any, teacher: Any, student: Any) -> dict[str, Any]:
    return run_metrics(
        teacher_part=_part(teacher, 19.0),
        student_part=_part(student, 6.7),
        achieved=0.34,
        teacher_finetuned=True,
        layer_map=[1, 5],
        pruning_plan={},
        spec=spec,
        runtime=SimpleNamespace(device=SimpleNamespace(type="cpu")),
        seq_len=128,
    )


def test_the_report_warns_of_a_class_never_predicted_even_when_the_target_is_met() -> None:
    gold, teacher, student = _intent_eval()
    spec = make_spec(Path("/t"), (Path("a"), Path("b")), Path("/r"), label_names=INTENTS)
    metrics = _metrics(
        spec,
        classification_scores(teacher, gold, INTENTS),
        classification_scores(student, gold, INTENTS),
    )
    assert metrics["retention"] > 0.95
    assert metrics["retention_macro_f1"] == pytest.approx(
        metrics["student"]["macro_f1"] / metrics["teacher"]["macro_f1"]
    )
    assert metrics["retention_macro_f1"] < 0.85
    metrics["speedup_target"] = {"target": 2.0, "measured": 2.1, "met": True}
    callback = RecordingCallback()
    (warning,) = report_warnings(
        metrics, spec=spec, teacher_config=MINILM, progress=Progress(callback)
    )
    assert warning["code"] == "class_never_predicted" and warning["classes"] == ["refund"]
    message = warning["message"]
    assert "never predicts class 'refund' (9 eval rows; teacher recall" in message
    assert f"macro-F1 retention {metrics['retention_macro_f1']:.3f}" in message
    assert "the speed target is met, but not with every class" in message
    assert [(m, level) for m, level, _ in callback.logs] == [(message, "warning")]


def test_a_report_warns_only_past_the_overshoot_bound() -> None:
    gold, teacher, _ = _intent_eval()
    spec = make_spec(Path("/t"), (Path("a"), Path("b")), Path("/r"), label_names=INTENTS)
    scores = classification_scores(teacher, gold, INTENTS)
    metrics = _metrics(spec, scores, scores)

    def codes(measured: float) -> list[str]:
        metrics["speedup_target"] = {"target": 2.0, "measured": measured, "met": True}
        found = report_warnings(
            metrics, spec=spec, teacher_config=MINILM, progress=Progress(RecordingCallback())
        )
        return [w["code"] for w in found]

    assert codes(2.1) == codes(2.49) == []  # within 25% of the target
    assert codes(2.6) == ["speedup_overshoot"]


def test_an_overshot_speed_target_is_explained_by_the_missing_step() -> None:
    """The issue's case: 2.0x asked with layers alone, 2 of 6 layers measured 2.82x
    because 3 layers fell just short."""
    sizes = plan.sizes_from_config(MINILM, num_labels=len(INTENTS))
    chosen = plan.Shape(2, 384, 1536, 12, 12)
    speed = SpeedPlan(chosen, 2.0, 2.77, 2.80, speed_steps.ESTIMATE_FIT, 2, 2, 128)
    spec = make_spec(
        Path("/t"),
        (Path("a"), Path("b")),
        Path("/r"),
        label_names=INTENTS,
        pruning=PruningSpec(structured=("layers",)),
    )
    gold, teacher, _ = _intent_eval()
    scores = classification_scores(teacher, gold, INTENTS)
    metrics = _metrics(spec, scores, scores)
    metrics["pruning_plan"] = {"speed_plan": speed.as_dict()}
    metrics["speedup_target"] = {"target": 2.0, "measured": 2.82, "met": True}
    (warning,) = report_warnings(
        metrics, spec=spec, teacher_config=MINILM, progress=Progress(RecordingCallback())
    )
    assert warning["code"] == "speedup_overshoot"
    message = warning["message"]
    assert "2.82x faster than the teacher for a target of 2x (41% more)" in message
    assert "(3 of 6 layers) was predicted at 1.92x" in message
    assert "no step in between" in message and "add 'ffn' to pruning.structured" in message
    assert sizes.shape_params(chosen) < sizes.shape_params(plan.Shape(3, 384, 1536, 12, 12))


def test_layers_alone_step_over_a_2x_target_and_layers_with_ffn_do_not() -> None:
    sizes = plan.sizes_from_config(MINILM, num_labels=len(INTENTS))
    alone = speed_steps.landing(sizes, ["layers"], 2.0, seq_len=128)
    assert alone.taken is not None and alone.short is not None
    assert (alone.taken.shape.num_layers, alone.short.shape.num_layers) == (2, 3)
    # What the job measured on its worker: 3 layers 1.94x, 2 layers 2.82x.
    assert alone.short.speedup == pytest.approx(1.94, rel=0.05)
    assert alone.taken.speedup == pytest.approx(2.82, rel=0.05)
    assert alone.overshoot > speed_steps.OVERSHOOT
    with_ffn = speed_steps.landing(sizes, vocabulary.STRUCTURED_DEFAULT, 2.0, seq_len=128)
    assert with_ffn.taken is not None and with_ffn.taken.shape.num_layers == 3
    assert with_ffn.overshoot < 0.1


def test_a_job_that_names_only_a_target_removes_layers_and_ffn_neurons() -> None:
    from app.jobs.schemas import Pruning

    assert PruningSpec().structured == ("layers", "ffn") == vocabulary.STRUCTURED_DEFAULT
    assert Pruning().structured == ["layers", "ffn"]


def test_the_learning_rate_follows_the_depth_of_the_cut() -> None:
    default = TrainingSpec()
    assert default.learning_rate is None
    assert student_learning_rate(default, 0.39) == DEEP_CUT_LEARNING_RATE == 1e-4
    assert student_learning_rate(default, 0.50) == STUDENT_LEARNING_RATE == 5e-5
    assert student_learning_rate(default, DEEP_CUT_BELOW) == STUDENT_LEARNING_RATE
    assert student_learning_rate(default, 1.0) == STUDENT_LEARNING_RATE  # sparsity only
    asked = TrainingSpec(learning_rate=3e-5)
    assert student_learning_rate(asked, 0.25) == 3e-5


def test_a_spec_may_leave_the_learning_rate_to_the_engine() -> None:
    def spec(learning_rate: float | None) -> Any:
        paths = (Path("/t"), (Path("a"), Path("b")), Path("/r"))
        return make_spec(*paths, training={"learning_rate": learning_rate})

    validate_spec(spec(None))
    with pytest.raises(EngineInputError) as info:
        validate_spec(spec(0))
    assert info.value.code == "bad_training"


@pytest.mark.parametrize(
    ("layer_map", "asked", "used"),
    [
        ([3], None, DEEP_CUT_LEARNING_RATE),
        ([0, 1, 2], None, STUDENT_LEARNING_RATE),
        ([3], 3e-5, 3e-5),
    ],
)
def test_distillation_trains_at_the_rate_for_its_cut(
    headed_teacher: Path,
    tiny_splits: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    layer_map: list[int],
    asked: float | None,
    used: float,
) -> None:
    from transformers import AutoTokenizer

    teacher = load_teacher(headed_teacher, LABELS).eval()
    student = build_student(teacher, layer_map)
    examples = read_jsonl(tiny_splits[0], num_labels=2, split="train")[:16]
    train = encode(
        AutoTokenizer.from_pretrained(headed_teacher), examples, max_length=32, split="t"
    )
    seen: list[float] = []

    def no_training(*, config: Any, **_: Any) -> list[dict[str, float]]:
        seen.append(config.learning_rate)
        return []

    monkeypatch.setattr(distill, "train_loop", no_training)
    callback = RecordingCallback()
    distill.distill(
        student,
        teacher,
        train,
        layer_map=layer_map,
        distillation=DistillationSpec(),
        training=TrainingSpec(epochs=1, batch_size=16, learning_rate=asked),
        pad_token_id=0,
        runtime=Runtime(torch.device("cpu")),
        progress=Progress(callback),
    )
    assert seen == [used]
    (logged,) = [data for _, _, data in callback.logs if data and "learning_rate" in data]
    assert logged["learning_rate"] == used
