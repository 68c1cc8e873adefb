"""Cached teacher logits: what is stored, that a cached run trains the student an
uncached run trains, that the teacher runs once per example, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedModel

from app.jobspec.rules import CACHE_CONFLICT as CONFLICT
from tests.engine.conftest import LABELS, RecordingCallback, make_spec
from tests.engine.tiny_models import tiny_encoder
from workers.engine import validate
from workers.engine.compress import compress
from workers.engine.data import IGNORE_INDEX, EncodedSplit, encode, read_jsonl
from workers.engine.distill import distill
from workers.engine.logits_cache import CACHE_DTYPE, cache_teacher_logits
from workers.engine.progress import Progress
from workers.engine.prune_layers import build_student
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
# Cached logits come from batches padded differently from the training batches, so
# they differ from recomputed ones by float32 rounding: after the run below the weights
# differ by 2.4e-7 at most (measured). Serving each batch its neighbours' logits instead
# left 2e-3, and training moved the weights by 4e-3.
WEIGHT_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-5
NO_HIDDEN = DistillationSpec(hidden_states=False)
TEACHER_SHARPEN = 30.0


def _progress() -> Progress:
    progress = Progress(NullCallback())
    progress.start_phase("distilling")
    return progress


def _alone(model: PreTrainedModel, ids: list[int]) -> torch.Tensor:
    """The model's logits on one unpadded example."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


@pytest.fixture(scope="module")
def train_split(headed_teacher: Path, tiny_splits: tuple[Path, Path]) -> EncodedSplit:
    tokenizer = AutoTokenizer.from_pretrained(headed_teacher)
    examples = read_jsonl(tiny_splits[0], num_labels=2, split="train")[:40]
    return encode(tokenizer, examples, max_length=32, split="train")


def test_sequence_cache_holds_each_examples_logits(
    headed_teacher: Path, train_split: EncodedSplit
) -> None:
    teacher = load_teacher(headed_teacher, LABELS)
    teacher.train()  # the cache must switch dropout off itself
    cache = cache_teacher_logits(
        teacher, train_split, batch_size=16, pad_token_id=0, runtime=CPU, progress=_progress()
    )
    assert not teacher.training
    assert len(cache) == len(train_split)
    assert cache.values.shape == (len(train_split), 2)
    assert cache.values.dtype == CACHE_DTYPE and cache.values.device.type == "cpu"
    assert cache.nbytes == len(train_split) * 2 * 4
    index = torch.tensor([7, 0, 39, 7])
    looked_up = cache.lookup(index)
    for row, i in enumerate(index.tolist()):
        expected = _alone(teacher, train_split.features["input_ids"][i])
        assert torch.allclose(looked_up[row], expected, atol=1e-5)


def _token_split() -> EncodedSplit:
    ids = [[2, 5, 6, 3], [2, 7, 3], [2, 8, 9, 10, 11, 3]]
    labels = [
        [IGNORE_INDEX if j in (0, len(row) - 1) else 1 for j in range(len(row))] for row in ids
    ]
    return EncodedSplit(
        name="train",
        features={"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]},
        labels=labels,
        texts=["a", "b", "c"],
        word_tags=[[1] * (len(r) - 2) for r in ids],
        labelled_words=[list(range(len(r) - 2)) for r in ids],
    )


def test_token_cache_is_unpadded_per_example_and_padded_on_lookup() -> None:
    model = tiny_encoder("bert", tokens=True, num_labels=3)
    split = _token_split()
    cache = cache_teacher_logits(
        model, split, batch_size=2, pad_token_id=0, runtime=CPU, progress=_progress()
    )
    assert cache.per_token
    assert cache.values.shape == (4 + 3 + 6, 3)  # one row per real token, no padding
    assert cache.offsets.tolist() == [0, 4, 7, 13]
    batch = cache.lookup(torch.tensor([1, 2]), length=6)
    assert batch.shape == (2, 6, 3)
    assert torch.allclose(batch[0, :3], _alone(model, split.features["input_ids"][1]), atol=1e-5)
    assert batch[0, 3:].abs().sum() == 0  # padding positions
    assert torch.allclose(batch[1], _alone(model, split.features["input_ids"][2]), atol=1e-5)
    with pytest.raises(ValueError, match="cannot hold"):
        cache.lookup(torch.tensor([2]), length=4)


def _distilled(
    headed_teacher: Path, split: EncodedSplit, *, cached: bool
) -> tuple[PreTrainedModel, list[dict[str, float]], int]:
    """Student, loss curve and the number of examples the teacher's forward saw."""
    teacher = load_teacher(headed_teacher, LABELS)
    student = build_student(teacher, [1, 3])
    with torch.no_grad():
        # The random head's logits are all near 0: sharpened, every example's differ
        # (by 1-10), so a logit served for the wrong example shows.
        teacher.classifier.weight.mul_(TEACHER_SHARPEN)
    seen = [0]

    def count(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen[0] += int(kwargs["input_ids"].shape[0])

    handle = teacher.register_forward_pre_hook(count, with_kwargs=True)
    torch.manual_seed(0)  # the student's dropout draws the same numbers in both runs
    curve = distill(
        student,
        teacher,
        split,
        layer_map=[1, 3],
        distillation=NO_HIDDEN,
        training=TrainingSpec(
            epochs=2, batch_size=16, learning_rate=1e-3, cache_teacher_logits=cached
        ),
        pad_token_id=0,
        runtime=CPU,
        progress=_progress(),
    )
    handle.remove()
    return student, curve, seen[0]


def test_cached_run_trains_the_same_student_with_one_teacher_pass(
    headed_teacher: Path, train_split: EncodedSplit
) -> None:
    plain, plain_curve, plain_seen = _distilled(headed_teacher, train_split, cached=False)
    cached, cached_curve, cached_seen = _distilled(headed_teacher, train_split, cached=True)
    # Two epochs: the uncached teacher sees every example twice, the cached one once.
    assert plain_seen == 2 * len(train_split)
    assert cached_seen == len(train_split)
    assert len(cached_curve) == len(plain_curve)
    for a, b in zip(plain_curve, cached_curve, strict=True):
        assert a["step"] == b["step"]
        assert a["loss"] == pytest.approx(b["loss"], abs=LOSS_TOLERANCE)
    plain_state, cached_state = plain.state_dict(), cached.state_dict()
    worst = max((plain_state[k] - cached_state[k]).abs().max().item() for k in plain_state)
    assert worst <= WEIGHT_TOLERANCE
    # The student did train: the runs agree on something that moved.
    teacher = load_teacher(headed_teacher, LABELS)
    start = build_student(teacher, [1, 3]).state_dict()
    moved = max((plain_state[k] - start[k]).abs().max().item() for k in start)
    assert moved > 100 * WEIGHT_TOLERANCE


def test_a_cache_built_once_serves_every_round(
    headed_teacher: Path, train_split: EncodedSplit
) -> None:
    teacher = load_teacher(headed_teacher, LABELS)
    calls = [0]
    teacher.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    cache = cache_teacher_logits(
        teacher, train_split, batch_size=16, pad_token_id=0, runtime=CPU, progress=_progress()
    )
    passes = calls[0]
    assert passes == train_split.num_batches(16)
    for keep in ([0, 1, 2], [1, 3]):  # two rounds, as a multi-round strategy runs them
        distill(
            build_student(teacher, keep),
            teacher,
            train_split,
            layer_map=keep,
            distillation=NO_HIDDEN,
            training=TrainingSpec(epochs=1, batch_size=16, cache_teacher_logits=True),
            pad_token_id=0,
            runtime=CPU,
            progress=_progress(),
            teacher_logits=cache,
        )
    assert calls[0] == passes


@pytest.mark.parametrize(
    "distillation",
    [
        DistillationSpec(),  # hidden_states=True by default
        DistillationSpec(hidden_states=False, attention=True),
    ],
)
def test_representation_losses_refuse_the_cache(
    headed_teacher: Path,
    train_split: EncodedSplit,
    tiny_splits: tuple[Path, Path],
    tmp_path: Path,
    distillation: DistillationSpec,
) -> None:
    teacher = load_teacher(headed_teacher, LABELS)
    with pytest.raises(EngineInputError) as info:
        distill(
            build_student(teacher, [1, 3]),
            teacher,
            train_split,
            layer_map=[1, 3],
            distillation=distillation,
            training=TrainingSpec(cache_teacher_logits=True),
            pad_token_id=0,
            runtime=CPU,
            progress=_progress(),
        )
    assert info.value.message == CONFLICT
    spec = make_spec(
        headed_teacher,
        tiny_splits,
        tmp_path,
        training={"cache_teacher_logits": True},
        distillation=distillation,
    )
    with pytest.raises(EngineInputError) as info:
        validate.validate_spec(spec)
    assert (info.value.code, info.value.message) == ("cache_needs_logits_only", CONFLICT)


def test_compress_with_cached_teacher_logits(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path: Path
) -> None:
    callback = RecordingCallback()
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        training={"cache_teacher_logits": True},
        distillation=NO_HIDDEN,
        pruning=PruningSpec(structured=("layers",)),
    )
    result = compress(spec, callback)
    assert result.metrics["student"]["accuracy"] >= 0.8
    cached = [d for _, _, d in callback.logs if d and "cached_examples" in d]
    assert len(cached) == 1
    report = json.loads((spec.output_dir / "report.json").read_text())
    assert cached[0]["cached_examples"] == report["data"]["train_examples"]
