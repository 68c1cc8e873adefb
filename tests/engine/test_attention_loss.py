"""The attention-map loss: hand-computed values, padding, head averaging, the layer map
through distill(), eager attention only while distilling, and a compress() run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from app.jobspec import vocabulary
from tests.engine.conftest import LABELS, RecordingCallback, make_spec
from tests.engine.tiny_models import random_batches, tiny_encoder
from workers.engine import losses, validate
from workers.engine.compress import compress
from workers.engine.data import EncodedSplit, encode, iter_batches, model_inputs, read_jsonl
from workers.engine.distill import attention_pairs, distill, eager_attention
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.prune_layers import build_student
from workers.engine.prune_width import Selection, build_pruned
from workers.engine.runtime import Runtime
from workers.engine.spec import (
    DistillationSpec,
    EngineInputError,
    NullCallback,
    PruningSpec,
    TrainingSpec,
)
from workers.engine.teacher import load_teacher

CPU = Runtime(torch.device("cpu"))


def _distilling() -> Progress:
    progress = Progress(NullCallback())
    progress.start_phase("distilling")
    return progress


def _loss(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor) -> float:
    value = get_loss("attention_kl")(
        LossInputs(
            student_logits=torch.zeros(mask.shape[0], 2),
            labels=torch.zeros(mask.shape[0], dtype=torch.long),
            attention_mask=mask,
            student_attentions=student,
            teacher_attentions=teacher,
        )
    )
    return value.item()


def _maps(*rows: list[list[float]]) -> torch.Tensor:
    """One sequence's maps, one [queries, keys] list per head: [1, heads, q, k]."""
    return torch.tensor([list(rows)])


def test_hand_computed_kl_per_query_row() -> None:
    teacher = _maps([[0.5, 0.5], [1.0, 0.0]])
    student = _maps([[0.25, 0.75], [0.5, 0.5]])
    # Row 0: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75); row 1: 1 ln(1/0.5) (0 ln 0 = 0).
    row0 = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    row1 = math.log(2.0)
    expected = (row0 + row1) / 2
    assert _loss([student], [teacher], torch.ones(1, 2)) == pytest.approx(expected, rel=1e-6)
    # Two layer pairs, the second identical: the mean over pairs halves it.
    pairs = _loss([student, teacher.clone()], [teacher, teacher], torch.ones(1, 2))
    assert pairs == pytest.approx(expected / 2, rel=1e-6)


def test_zero_when_the_maps_agree() -> None:
    scores = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    maps = scores.softmax(dim=-1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    assert abs(_loss([maps, maps], [maps.clone(), maps.clone()], mask)) < 1e-6
    assert _loss([maps], [scores.flip(-1).softmax(dim=-1)], mask) > 1e-3


def test_padding_has_no_effect() -> None:
    teacher = _maps([[0.5, 0.5], [0.9, 0.1]])
    student = _maps([[0.2, 0.8], [0.6, 0.4]])
    reference = _loss([student], [teacher], torch.ones(1, 2))

    def padded(maps: torch.Tensor, junk: float) -> torch.Tensor:
        out = torch.full((1, 1, 3, 3), junk)
        out[0, 0, :2, :2] = maps[0, 0]
        return out

    mask = torch.tensor([[1, 1, 0]])
    # Anything at all in the padded query row and the padded key column.
    for junk in (0.0, 0.3, 7.0):
        value = _loss([padded(student, junk)], [padded(teacher, 1.0 - junk)], mask)
        assert value == pytest.approx(reference, rel=1e-6)


def test_fewer_student_heads_compare_head_averaged_maps() -> None:
    teacher = _maps([[0.8, 0.2], [0.4, 0.6]], [[0.2, 0.8], [0.6, 0.4]])  # mean: all 0.5
    uniform = _maps([[0.5, 0.5], [0.5, 0.5]])
    assert abs(_loss([uniform], [teacher], torch.ones(1, 2))) < 1e-7
    skewed = _maps([[0.8, 0.2], [0.4, 0.6]])
    # KL(mean teacher = uniform ‖ skewed), averaged over the two rows.
    row0 = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    row1 = 0.5 * math.log(0.5 / 0.4) + 0.5 * math.log(0.5 / 0.6)
    assert _loss([skewed], [teacher], torch.ones(1, 2)) == pytest.approx((row0 + row1) / 2)


def test_gradient_reaches_only_real_positions_of_the_student_maps() -> None:
    scores = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    student_scores = scores.clone().requires_grad_(True)
    teacher = scores.flip(0).roll(1, dims=-1).softmax(-1)
    mask = torch.tensor([[1, 1, 0]])
    value = get_loss("attention_kl")(
        LossInputs(
            student_logits=torch.zeros(1, 2),
            labels=torch.zeros(1, dtype=torch.long),
            attention_mask=mask,
            student_attentions=[student_scores.softmax(-1)],
            teacher_attentions=[teacher],
        )
    )
    value.backward()
    grad = student_scores.grad
    assert grad is not None
    assert grad[0, :, 2].abs().sum() == 0  # the padded query row
    assert grad[0, :, :2].abs().sum() > 0


def test_real_model_maps_against_themselves_give_zero_with_padding() -> None:
    model = tiny_encoder("bert")
    batch = random_batches(1)[0]
    assert (batch["attention_mask"] == 0).any()
    with eager_attention([model]), torch.inference_mode():
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_attentions=True,
        )
    maps = list(out.attentions)
    assert len(maps) == 4 and maps[0].shape == (8, 4, 12, 12)
    assert abs(_loss(maps, [m.clone() for m in maps], batch["attention_mask"])) < 1e-6


def test_eager_attention_is_for_the_block_only() -> None:
    model = tiny_encoder("bert")
    before = model.config._attn_implementation
    assert before != "eager"  # sdpa by default: no maps come back
    batch = random_batches(1)[0]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with eager_attention([model]):
        assert model.config._attn_implementation == "eager"
        assert len(model(**inputs, output_attentions=True).attentions) == 4
    assert model.config._attn_implementation == before
    # Restored even when the block fails.
    with pytest.raises(RuntimeError), eager_attention([model]):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == before


def test_attention_pairs_follow_the_layer_map() -> None:
    assert attention_pairs([1, 3]) == [(0, 1), (1, 3)]


@pytest.fixture(scope="module")
def train_split(headed_teacher: Path, tiny_splits: tuple[Path, Path]) -> EncodedSplit:
    tokenizer = AutoTokenizer.from_pretrained(headed_teacher)
    examples = read_jsonl(tiny_splits[0], num_labels=2, split="train")[:48]
    return encode(tokenizer, examples, max_length=32, split="train")


def test_distill_compares_each_student_layer_with_its_mapped_teacher_layer(
    headed_teacher: Path, train_split: EncodedSplit, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = load_teacher(headed_teacher, LABELS).eval()
    layer_map = [1, 3]
    student = build_student(teacher, layer_map)
    seen: list[tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]] = []
    real = losses.LOSSES["attention_kl"]

    def spy(inputs: LossInputs) -> torch.Tensor:
        assert inputs.student_attentions is not None and inputs.teacher_attentions is not None
        seen.append(
            (
                [a.detach().clone() for a in inputs.student_attentions],
                [a.clone() for a in inputs.teacher_attentions],
                inputs.attention_mask.clone(),
            )
        )
        return real(inputs)

    monkeypatch.setitem(losses.LOSSES, "attention_kl", spy)
    distill(
        student,
        teacher,
        train_split,
        layer_map=layer_map,
        distillation=DistillationSpec(hidden_states=False, attention=True),
        training=TrainingSpec(epochs=1, batch_size=16, learning_rate=1e-3),
        pad_token_id=0,
        runtime=CPU,
        progress=_distilling(),
    )
    assert len(seen) == train_split.num_batches(16)
    student_maps, teacher_maps, mask = seen[0]
    assert [m.shape[1] for m in student_maps] == [4, 4]
    assert mask.shape == student_maps[0].shape[::3]
    # The first batch's teacher maps are teacher layers 1 and 3, recomputed here.
    assert len(teacher_maps) == 2
    with eager_attention([teacher]), torch.inference_mode():
        full = teacher(**_first_batch(train_split), output_attentions=True).attentions
    for mapped, teacher_layer in zip(teacher_maps, layer_map, strict=True):
        assert torch.allclose(mapped, full[teacher_layer], atol=1e-6)
    # Both models are back to their own attention implementation.
    assert student.config._attn_implementation == "sdpa"
    assert teacher.config._attn_implementation == "sdpa"


def _first_batch(split: EncodedSplit) -> dict[str, torch.Tensor]:
    """The first training batch of distill(): seed 0's shuffle, as train_loop draws it."""
    generator = torch.Generator().manual_seed(0)
    return model_inputs(next(iter_batches(split, 16, pad_token_id=0, generator=generator)))


def test_fewer_student_heads_train_through_distill(
    headed_teacher: Path, train_split: EncodedSplit
) -> None:
    """Hidden-width pruning leaves the student 2 heads of the teacher's 4: the maps are
    head-averaged and the run trains."""
    teacher = load_teacher(headed_teacher, LABELS).eval()
    heads = [torch.tensor([0, 1])] * 2
    student = build_pruned(
        teacher,
        Selection(
            layers=(0, 2), channels=torch.arange(16), heads=heads, classifier=torch.arange(16)
        ),
    )
    assert student.config.num_attention_heads == 2
    curve = distill(
        student,
        teacher,
        train_split,
        layer_map=[0, 2],
        distillation=DistillationSpec(hidden_states=True, attention=True),
        training=TrainingSpec(epochs=1, batch_size=16, learning_rate=1e-3),
        pad_token_id=0,
        runtime=CPU,
        progress=_distilling(),
    )
    assert curve and all(math.isfinite(point["loss"]) for point in curve)


def test_validate_refuses_attention_only_when_the_capability_is_off(
    headless_teacher: Path,
    tiny_splits: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = make_spec(
        headless_teacher, tiny_splits, tmp_path, distillation=DistillationSpec(attention=True)
    )
    assert vocabulary.ATTENTION_LOSS is True
    validate.validate_spec(spec)
    monkeypatch.setattr(vocabulary, "ATTENTION_LOSS", False)
    with pytest.raises(EngineInputError) as info:
        validate.validate_spec(spec)
    assert (info.value.code, info.value.param) == ("not_supported_yet", "distillation.attention")


def test_compress_with_the_attention_loss(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path: Path
) -> None:
    callback = RecordingCallback()
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        distillation=DistillationSpec(attention=True),
        pruning=PruningSpec(structured=("layers",)),
    )
    result = compress(spec, callback)
    assert result.metrics["student"]["accuracy"] >= 0.8
    terms = [d["losses"] for _, _, d in callback.logs if d and "losses" in d]
    assert terms == [{"ce": 0.5, "kd_kl": 0.5, "hidden_mse": 1.0, "attention_kl": 1.0}]
    report = json.loads((spec.output_dir / "report.json").read_text())
    assert report["spec"]["distillation"]["attention"] is True
    assert all(math.isfinite(p["loss"]) for p in report["training"]["distilling"])
    # The export is an ordinary checkpoint: nothing about eager attention is saved.
    config = json.loads((spec.output_dir / "model" / "config.json").read_text())
    assert config.get("attn_implementation") in (None, "sdpa")
    assert "eager" not in json.dumps(config)
