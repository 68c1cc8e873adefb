"""The pruning plan: how many layers, how wide an FFN and a hidden width, and how many
heads meet a params_ratio target."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    ElectraConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    RobertaConfig,
)

from app.jobspec.plan import (
    WIDTH_MULTIPLE,
    PrunePlan,
    TeacherSizes,
    check_structured,
    evenly_spaced_layers,
    ffn_floor,
    plan_structured,
    plan_student,
    sizes_from_config,
    smallest_ratio,
)
from workers.engine.layers import parameter_counts
from workers.engine.prune_layers import sizes_from_model
from workers.engine.spec import EngineInputError

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


# -- hidden width and heads ---------------------------------------------------------------

# Llama-3-8B's shape (no model is built): 32 query heads over 8 KV heads of 128.
LLAMA_8B = {
    "model_type": "llama",
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
}
WIDTH_COMBOS = [
    ("layers", "hidden"),
    ("layers", "ffn", "hidden"),
]
LLAMA_COMBOS = [
    *WIDTH_COMBOS,
    ("layers", "heads"),
    ("layers", "ffn", "heads"),
    ("layers", "ffn", "hidden", "heads"),
]


@pytest.fixture
def llama8b() -> TeacherSizes:
    return sizes_from_config(LLAMA_8B, num_labels=2)


def _check_plan(sizes: TeacherSizes, plan: PrunePlan, ratio: float, structured: tuple) -> None:
    target = ratio * sizes.teacher_non_embedding
    assert plan.non_embedding >= target
    assert plan.non_embedding == sizes.non_embedding(
        plan.num_layers,
        plan.intermediate_size,
        plan.hidden_size,
        plan.num_attention_heads,
        plan.num_key_value_heads,
    )
    assert plan.layer_map == tuple(evenly_spaced_layers(sizes.num_layers, plan.num_layers))
    assert plan.head_dim == sizes.head_dim
    for name, size, full in (
        ("ffn", plan.intermediate_size, sizes.intermediate_size),
        ("hidden", plan.hidden_size, sizes.hidden_size),
    ):
        if name not in structured:
            assert size == full
        else:
            assert size == full or size % WIDTH_MULTIPLE == 0
    assert plan.hidden_size >= sizes.hidden_size // 2
    assert plan.intermediate_size >= ffn_floor(sizes.intermediate_size)
    if sizes.explicit_heads:
        # What LlamaConfig validates, and KV groups kept whole.
        assert plan.hidden_size % plan.num_attention_heads == 0
        assert plan.num_attention_heads % plan.num_key_value_heads == 0
        assert plan.num_key_value_heads == sizes.num_kv_heads  # grouped: queries go first
        assert plan.num_attention_heads >= sizes.num_heads // 2
        if "heads" not in structured:
            assert plan.num_attention_heads == sizes.num_heads
    else:
        # Heads keep their size and follow the hidden width.
        assert plan.num_attention_heads * plan.head_dim == plan.hidden_size
        assert plan.hidden_size % plan.head_dim == 0


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("structured", WIDTH_COMBOS)
def test_bert_width_plans_reach_the_target_in_whole_heads(
    minilm: TeacherSizes, ratio: float, structured: tuple
) -> None:
    plan = plan_structured(minilm, ratio, structured)
    _check_plan(minilm, plan, ratio, structured)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("structured", LLAMA_COMBOS)
def test_llama_plans_reach_the_target_and_respect_kv_groups(
    llama8b: TeacherSizes, ratio: float, structured: tuple
) -> None:
    plan = plan_structured(llama8b, ratio, structured)
    _check_plan(llama8b, plan, ratio, structured)


@pytest.mark.parametrize("ratio", [0.9, 0.75, 0.5, 0.3])
def test_with_an_ffn_axis_the_plan_lands_within_one_step_of_the_target(
    minilm: TeacherSizes, llama8b: TeacherSizes, ratio: float
) -> None:
    """The FFN absorbs the rest of the target: less than one 8-neuron step per layer."""
    for sizes, structured in (
        (minilm, ("layers", "ffn", "hidden")),
        (llama8b, ("layers", "ffn", "hidden", "heads")),
    ):
        plan = plan_structured(sizes, ratio, structured)
        target = ratio * sizes.teacher_non_embedding
        per_neuron = (3 if sizes.explicit_heads else 2) * plan.hidden_size + 1
        assert plan.non_embedding - target < plan.num_layers * WIDTH_MULTIPLE * per_neuron
        assert plan.num_layers == sizes.num_layers  # width first at these ratios


def test_the_width_rule_pinned(minilm: TeacherSizes, llama8b: TeacherSizes) -> None:
    """Width before depth, every allowed axis shrunk by one shared fraction, FFN last."""
    plan = plan_structured(minilm, 0.5, ("layers", "ffn", "hidden"))
    assert (plan.num_layers, plan.hidden_size, plan.num_attention_heads) == (6, 288, 9)
    assert plan.intermediate_size == 960
    plan = plan_structured(llama8b, 0.5, ("layers", "ffn", "hidden", "heads"))
    assert (plan.num_layers, plan.hidden_size, plan.intermediate_size) == (32, 2856, 10000)
    assert (plan.num_attention_heads, plan.num_key_value_heads) == (24, 8)
    # Depth goes only once every width is at its floor.
    plan = plan_structured(llama8b, 0.05, ("layers", "ffn", "hidden", "heads"))
    assert plan.num_layers < 32
    assert (plan.hidden_size, plan.num_attention_heads) == (2048, 16)


@pytest.mark.parametrize("ratio", RATIOS)
def test_more_width_axes_keep_at_least_as_many_layers(minilm: TeacherSizes, ratio: float) -> None:
    ffn_only = plan_structured(minilm, ratio, ("layers", "ffn"))
    both = plan_structured(minilm, ratio, ("layers", "ffn", "hidden"))
    assert both.num_layers >= ffn_only.num_layers


def test_layers_and_ffn_plans_are_unchanged_by_the_new_axes(minilm: TeacherSizes) -> None:
    for ratio in RATIOS:
        for structured, ffn in ((("layers",), False), (("layers", "ffn"), True)):
            assert plan_structured(minilm, ratio, structured) == plan_student(
                minilm, ratio, ffn=ffn
            )


@pytest.mark.parametrize("sizes_name", ["minilm", "llama8b"])
def test_smallest_ratio_is_what_the_smallest_plan_reaches(
    sizes_name: str, request: pytest.FixtureRequest
) -> None:
    sizes = request.getfixturevalue(sizes_name)
    combos = (
        LLAMA_COMBOS if sizes.explicit_heads else [("layers",), ("layers", "ffn"), *WIDTH_COMBOS]
    )
    for structured in combos:
        smallest = smallest_ratio(sizes, structured)
        plan = plan_structured(sizes, smallest, structured)
        assert plan.num_layers == 1
        assert plan.params_ratio == pytest.approx(smallest)
        assert plan_structured(sizes, 0.001, structured) == dataclasses.replace(
            plan, target_ratio=0.001
        )
    # The API's historical check (one layer, FFN at its floor) is the same number.
    floor = ffn_floor(sizes.intermediate_size)
    expected = sizes.non_embedding(1, floor) / sizes.teacher_non_embedding
    assert smallest_ratio(sizes, ("layers", "ffn")) == pytest.approx(expected)


def test_a_student_pruned_again_keeps_the_original_teachers_floors(
    minilm: TeacherSizes, llama8b: TeacherSizes
) -> None:
    # A later round of a strategy plans against the student of the round before; its
    # floors are still fractions of the original teacher, as the API's check assumes.
    student = sizes_from_config({**MINILM, "intermediate_size": 600}, num_labels=2)
    alone = plan_structured(student, 0.7, ("layers", "ffn"))
    assert alone.intermediate_size < ffn_floor(1536)  # 1/4 of 600: what the quirk did
    again = dataclasses.replace(student, floors_of=minilm.teacher_shape)
    plan = plan_structured(again, 0.7, ("layers", "ffn"))
    assert plan.intermediate_size >= ffn_floor(1536) == 384
    assert plan.non_embedding >= 0.7 * student.teacher_non_embedding
    assert smallest_ratio(again, ("layers", "ffn")) > smallest_ratio(student, ("layers", "ffn"))
    # A width already below the original floor stays where it is, never grows.
    narrow = dataclasses.replace(
        sizes_from_config({**MINILM, "intermediate_size": 368}, num_labels=2),
        floors_of=minilm.teacher_shape,
    )
    assert plan_structured(narrow, 0.5, ("layers", "ffn")).intermediate_size == 368
    # Llama: hidden width and query heads per group keep the original halves.
    shape = llama8b.teacher_shape
    half = sizes_from_config(
        {**LLAMA_8B, "hidden_size": shape.hidden_size * 3 // 4, "num_attention_heads": 24},
        num_labels=2,
    )
    again = dataclasses.replace(half, floors_of=shape)
    plan = plan_structured(again, 0.2, ("layers", "ffn", "hidden", "heads"))
    assert plan.hidden_size >= shape.hidden_size // 2
    assert plan.num_attention_heads >= shape.num_heads // 2


def test_structures_a_config_cannot_describe_are_refused(minilm: TeacherSizes) -> None:
    for structured, code, words in (
        (("layers", "heads"), "pruning_not_possible", "'hidden'"),
        (("layers", "rows"), "not_supported_yet", "'rows' not supported yet"),
        (("ffn",), "not_supported_yet", 'must include "layers"'),
    ):
        with pytest.raises(EngineInputError) as info:
            plan_structured(minilm, 0.5, structured)
        assert (info.value.code, info.value.param) == (code, "pruning.structured")
        assert words in info.value.message
    headless = sizes_from_config({**MINILM, "num_attention_heads": None}, num_labels=2)
    with pytest.raises(EngineInputError, match="num_attention_heads"):
        check_structured(headless, ("layers", "hidden"))
    check_structured(headless, ("layers", "ffn"))  # the old plans need no heads


def test_electra_hidden_never_lands_on_the_embedding_width() -> None:
    """At H' = E an ELECTRA config drops the projection the teacher's weights need."""
    sizes = sizes_from_config(
        {**MINILM, "model_type": "electra", "embedding_size": 128}, num_labels=2
    )
    seen = {
        plan_structured(sizes, r / 100, ("layers", "hidden")).hidden_size for r in range(1, 101)
    }
    assert 128 not in seen and len(seen) > 3


@pytest.mark.parametrize(
    "config",
    [
        LlamaConfig(vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=8, intermediate_size=96),
        LlamaConfig(vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=8, intermediate_size=96, attention_bias=True,
                    mlp_bias=True),
        MistralConfig(vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                      num_key_value_heads=2, head_dim=16, intermediate_size=96),
        Qwen2Config(vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=4, intermediate_size=96),
    ],
    ids=["llama-gqa", "llama-biases", "mistral", "qwen2"],
)  # fmt: skip
def test_llama_family_sizes_match_the_built_model(config: object) -> None:
    config.num_labels = 3
    config.pad_token_id = 0
    model = AutoModelForSequenceClassification.from_config(config)
    non_embedding = parameter_counts(model).non_embedding
    sizes = sizes_from_model(model, non_embedding)  # checks every layer's count too
    assert sizes == sizes_from_config(config, num_labels=3)
    assert sizes.teacher_non_embedding == non_embedding
    assert sizes.explicit_heads
