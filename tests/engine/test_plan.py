"""The pruning plan: how many layers and how wide an FFN meet a params_ratio target."""

from __future__ import annotations

import pytest
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    ElectraConfig,
    RobertaConfig,
)

from workers.engine.layers import parameter_counts
from workers.engine.plan import (
    WIDTH_MULTIPLE,
    TeacherSizes,
    ffn_floor,
    plan_student,
    sizes_from_config,
)
from workers.engine.prune_layers import sizes_from_model

# all-MiniLM-L6-v2's shape: 6 layers, hidden 384, FFN 1536 (no model is built).
MINILM = {
    "model_type": "bert",
    "num_hidden_layers": 6,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_attention_heads": 12,
}
RATIOS = (1.0, 0.9, 0.75, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.1, 0.05, 0.01)


@pytest.fixture
def minilm() -> TeacherSizes:
    return sizes_from_config(MINILM, num_labels=2)


def test_half_of_minilm_prefers_width_to_depth(minilm: TeacherSizes) -> None:
    target = 0.5 * minilm.teacher_non_embedding
    plan = plan_student(minilm, 0.5, ffn=True)
    layers_only = plan_student(minilm, 0.5, ffn=False)

    assert plan.non_embedding >= target
    assert plan.intermediate_size % WIDTH_MULTIPLE == 0
    assert ffn_floor(1536) == 384 <= plan.intermediate_size < 1536
    # More layers kept than dropping layers alone (3 of 6 at full width)...
    assert (layers_only.num_layers, layers_only.intermediate_size) == (3, 1536)
    assert plan.num_layers > layers_only.num_layers
    # ...and as close to the target as 8-neuron steps allow: one step narrower misses it.
    assert minilm.non_embedding(plan.num_layers, plan.intermediate_size - 8) < target
    # The rule's answer, pinned: 6 layers would need 368 neurons, under the floor of 384.
    assert (plan.num_layers, plan.intermediate_size) == (5, 600)
    assert plan.layer_map == (0, 1, 2, 3, 5)
    assert plan.params_ratio == pytest.approx(0.5022, abs=1e-4)


@pytest.mark.parametrize("ratio", RATIOS)
def test_every_plan_reaches_the_target_with_kernel_friendly_widths(
    minilm: TeacherSizes, ratio: float
) -> None:
    target = ratio * minilm.teacher_non_embedding
    for ffn in (True, False):
        plan = plan_student(minilm, ratio, ffn=ffn)
        assert plan.non_embedding >= target
        assert plan.non_embedding == minilm.non_embedding(plan.num_layers, plan.intermediate_size)
        assert plan.params_ratio == pytest.approx(plan.non_embedding / (target / ratio))
        assert len(plan.layer_map) == plan.num_layers
        assert plan.layer_map[-1] == 5  # the last layer, under the classifier, stays
        width = plan.intermediate_size
        assert width == 1536 or width % WIDTH_MULTIPLE == 0
        assert 384 <= width <= 1536
        if not ffn:
            assert width == 1536


@pytest.mark.parametrize("ratio", RATIOS)
def test_ffn_plans_keep_at_least_as_many_layers_and_fewer_parameters(
    minilm: TeacherSizes, ratio: float
) -> None:
    with_ffn = plan_student(minilm, ratio, ffn=True)
    layers_only = plan_student(minilm, ratio, ffn=False)
    assert with_ffn.num_layers >= layers_only.num_layers
    assert with_ffn.non_embedding <= layers_only.non_embedding


def test_full_ratio_keeps_the_teacher(minilm: TeacherSizes) -> None:
    for ffn in (True, False):
        plan = plan_student(minilm, 1.0, ffn=ffn)
        assert (plan.num_layers, plan.intermediate_size) == (6, 1536)
        assert plan.params_ratio == 1.0


def test_targets_below_one_narrow_layer_take_the_smallest_plan(minilm: TeacherSizes) -> None:
    plan = plan_student(minilm, 0.01, ffn=True)
    assert (plan.num_layers, plan.intermediate_size) == (1, 384)
    assert plan.layer_map == (5,)


def test_widths_that_are_not_multiples_of_eight_only_when_full() -> None:
    sizes = sizes_from_config({**MINILM, "intermediate_size": 1530}, num_labels=2)
    assert ffn_floor(1530) == 384
    for ratio in RATIOS:
        width = plan_student(sizes, ratio, ffn=True).intermediate_size
        assert width == 1530 or width % WIDTH_MULTIPLE == 0


def test_bad_ratios_are_refused(minilm: TeacherSizes) -> None:
    for ratio in (0.0, -0.5, 1.01):
        with pytest.raises(ValueError):
            plan_student(minilm, ratio, ffn=True)


@pytest.mark.parametrize(
    "config",
    [
        BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                   intermediate_size=72),
        RobertaConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64),
        ElectraConfig(vocab_size=40, hidden_size=32, embedding_size=16, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64),
    ],
    ids=["bert", "roberta", "electra"],
)  # fmt: skip
def test_sizes_from_config_match_the_built_model(config: object) -> None:
    config.num_labels = 3
    model = AutoModelForSequenceClassification.from_config(config)
    non_embedding = parameter_counts(model).non_embedding
    measured = sizes_from_model(model, non_embedding)
    assert sizes_from_config(config, num_labels=3) == measured
    assert measured.teacher_non_embedding == non_embedding
