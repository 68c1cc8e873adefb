"""Gradual pruning of single weights (unstructured and 2:4, magnitude and Taylor
criteria): schedule, masks, resume, export."""

from __future__ import annotations

import gzip
import io
import json
import random
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from tests.tiny import VOCAB, make_tiny_bert, make_tiny_dataset
from workers.engine.masks import allocate, lowest, two_four_masks, unstructured_masks
from workers.engine.sparsity import (
    SparsityConfig,
    SparsityPruner,
    compressed_size_bytes,
    prunable_weights,
    sparsity_config,
    sparsity_report,
)
from workers.engine.sparsity_schedule import cubic_sparsity, default_schedule
from workers.engine.spec import EngineInputError


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("sparsity") / "bert", num_labels=2, seed=3)


def load(folder: Path) -> nn.Module:
    return AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)


def one_shot(target: float, pattern: str = "unstructured", **choices: str) -> SparsityConfig:
    return SparsityConfig(target=target, pattern=pattern, begin_step=0, end_step=1, **choices)


def zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: w.detach() == 0 for name, w in prunable_weights(model)}


# --- schedule -------------------------------------------------------------------------


def test_cubic_schedule_hand_computed():
    kw = {"final": 0.8, "begin_step": 10, "end_step": 110}
    assert cubic_sparsity(0, **kw) == 0.0
    assert cubic_sparsity(10, **kw) == 0.0
    # a quarter of the way: 0.8 - 0.8 * 0.75^3 = 0.4625; half way: 0.8 - 0.8 / 8 = 0.7
    assert cubic_sparsity(35, **kw) == pytest.approx(0.4625)
    assert cubic_sparsity(60, **kw) == pytest.approx(0.7)
    assert cubic_sparsity(110, **kw) == 0.8
    assert cubic_sparsity(500, **kw) == 0.8
    # from a non-zero start: 0.9 + (0.5 - 0.9) * 0.5^3 = 0.85
    assert cubic_sparsity(60, final=0.9, initial=0.5, begin_step=10, end_step=110) == (
        pytest.approx(0.85)
    )
    # begin == end is one-shot
    assert cubic_sparsity(4, final=0.5, begin_step=5, end_step=5) == 0.0
    assert cubic_sparsity(5, final=0.5, begin_step=5, end_step=5) == 0.5


def test_default_schedule_leaves_the_last_third_to_recover():
    steps = default_schedule(300)
    assert (steps.begin_step, steps.end_step, steps.update_every) == (30, 200, 5)
    tiny = default_schedule(1)
    assert (tiny.begin_step, tiny.end_step, tiny.update_every) == (0, 1, 1)
    with pytest.raises(ValueError):
        default_schedule(0)
    config = sparsity_config(0.8, "unstructured", 300)
    assert (config.begin_step, config.end_step, config.update_every) == (30, 200, 5)


def test_config_rejects_what_cannot_be_met():
    with pytest.raises(ValueError, match="2:4"):
        SparsityConfig(target=0.8, pattern="2:4", begin_step=0, end_step=1)
    with pytest.raises(ValueError, match="pattern"):
        SparsityConfig(target=0.5, pattern="4:8", begin_step=0, end_step=1)
    with pytest.raises(ValueError):
        SparsityConfig(target=0.5, begin_step=5, end_step=2)


# --- masks on plain tensors -----------------------------------------------------------


def test_allocate_takes_the_lowest_uniform_slots_exactly():
    sizes = [3, 5, 8, 7, 8]
    # brute force: slot j of matrix i at (j + 1/2) / n_i, ties to the lower index
    slots = sorted((Fraction(2 * j + 1, 2 * n), i) for i, n in enumerate(sizes) for j in range(n))
    previous = [0] * len(sizes)
    for total in range(sum(sizes) + 1):
        counts = allocate(sizes, total)
        expected = [sum(1 for _, i in slots[:total] if i == k) for k in range(len(sizes))]
        assert counts == expected
        assert all(abs(c - total * n / sum(sizes)) <= 1 for c, n in zip(counts, sizes, strict=True))
        assert all(c >= p for c, p in zip(counts, previous, strict=True))  # never un-prunes
        previous = counts


def test_unstructured_masks_drop_the_smallest_per_matrix():
    torch.manual_seed(0)
    weights = [torch.randn(8, 12), torch.randn(16, 8)]
    masks = unstructured_masks(
        [w.abs() for w in weights], [torch.ones_like(w, dtype=torch.bool) for w in weights], 0.75
    )
    for w, m in zip(weights, masks, strict=True):
        assert int((~m).sum()) == 0.75 * w.numel()
        assert w[m].abs().min() > w[~m].abs().max()


def test_global_scope_ranks_all_matrices_together():
    # Matrix 0 matters little everywhere, matrix 1 a lot: per matrix both lose half,
    # globally matrix 0 goes first and whole, and the total is the same.
    scores = [torch.full((4, 4), 0.1), torch.arange(1.0, 33.0).view(4, 8)]
    scores[0][0, 0] = 20.0  # one weight of matrix 0 outranks nine of matrix 1
    fresh = [torch.ones_like(s, dtype=torch.bool) for s in scores]
    per_matrix = unstructured_masks(scores, fresh, 0.5)
    assert [int((~m).sum()) for m in per_matrix] == [8, 16]
    masks = unstructured_masks(scores, fresh, 0.5, scope="global")
    assert [int((~m).sum()) for m in masks] == [15, 9]
    assert masks[0].sum() == 1 and masks[0][0, 0]
    assert not masks[1].view(-1)[:9].any() and masks[1].view(-1)[9:].all()
    with pytest.raises(ValueError, match="scope"):
        unstructured_masks(scores, fresh, 0.5, scope="layer")


def test_lowest_breaks_ties_by_index():
    scores = torch.tensor([3.0, 0.0, 2.0, 0.0, 0.0, 1.0])
    assert lowest(scores, 2).tolist() == [False, True, False, True, False, False]
    assert lowest(scores, 4).tolist() == [False, True, False, True, True, True]
    assert not lowest(scores, 0).any() and lowest(scores, 6).all()


@pytest.mark.parametrize("build", [unstructured_masks, two_four_masks])
def test_a_pruned_weight_is_never_revived(build):
    # Between mask updates the optimizer moves pruned weights (before on_step re-zeroes
    # them); even when it moves them far, the next update keeps them pruned.
    torch.manual_seed(0)
    weight = torch.randn(8, 16).abs()
    (first,) = build([weight], [torch.ones_like(weight, dtype=torch.bool)], 0.25)
    moved = torch.where(first, weight, 100.0)
    (second,) = build([moved], [first], 0.5)
    assert not second[~first].any()
    assert int((~second).sum()) == 64


def test_two_four_masks_keep_the_two_largest_of_each_group():
    torch.manual_seed(0)
    weight = torch.randn(6, 16)
    (mask,) = two_four_masks([weight.abs()], [torch.ones_like(weight, dtype=torch.bool)], 0.5)
    groups, kept = weight.abs().reshape(-1, 4), mask.reshape(-1, 4)
    assert (kept.sum(dim=1) == 2).all()
    top2 = torch.zeros_like(kept).scatter_(1, groups.topk(2, dim=1).indices, True)
    assert torch.equal(kept, top2)


# --- what is pruned -------------------------------------------------------------------


def test_prunable_weights_are_the_bert_block_linears(bert_dir: Path):
    names = [name for name, _ in prunable_weights(load(bert_dir))]
    per_layer = {
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense",
    }  # fmt: skip
    expected = {f"bert.encoder.layer.{i}.{m}.weight" for i in range(4) for m in per_layer}
    assert set(names) == expected and len(names) == len(expected)


def test_prunable_weights_find_llama_projections():
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, num_labels=2,
    )  # fmt: skip
    names = {name for name, _ in prunable_weights(LlamaForSequenceClassification(config))}
    projections = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                   "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")  # fmt: skip
    assert names == {f"model.layers.{i}.{p}.weight" for i in range(2) for p in projections}


def test_a_model_without_blocks_is_an_input_error():
    with pytest.raises(EngineInputError) as error:
        prunable_weights(nn.Sequential(nn.Linear(4, 4)))
    assert error.value.code == "unsupported_architecture"


def test_two_four_needs_input_width_divisible_by_four():
    config = BertConfig(
        vocab_size=20, hidden_size=30, num_hidden_layers=1, num_attention_heads=3,
        intermediate_size=60, num_labels=2,
    )  # fmt: skip
    with pytest.raises(EngineInputError, match="multiple of 4"):
        SparsityPruner(BertForSequenceClassification(config), one_shot(0.5, "2:4"))


# --- the pruner on a tiny BERT --------------------------------------------------------


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_unstructured_sparsity_is_exactly_the_target(bert_dir: Path, target: float):
    model = load(bert_dir)
    before = {name: w.detach().clone() for name, w in prunable_weights(model)}
    pruner = SparsityPruner(model, one_shot(target))
    pruner.on_step(1)
    report = sparsity_report(model)
    n = report["encoder_parameters"]
    assert n == sum(w.numel() for w in before.values())
    assert abs(report["sparsity"] - target) <= 1 / n
    assert report["encoder_nonzero"] == n - round(target * n)
    assert pruner.current_sparsity() == pytest.approx(report["sparsity"])
    for name, w in prunable_weights(model):
        pruned = w.detach() == 0
        assert abs(int(pruned.sum()) - target * w.numel()) <= 1  # uniform per matrix
        assert before[name][~pruned].abs().min() >= before[name][pruned].abs().max()


def test_two_four_is_exactly_half_in_every_group(bert_dir: Path):
    model = load(bert_dir)
    pruner = SparsityPruner(model, one_shot(0.5, "2:4"))
    pruner.on_step(1)
    report = sparsity_report(model)
    assert report["sparsity"] == 0.5
    assert report["groups_2_4"] == 1.0
    for _, w in prunable_weights(model):
        assert ((w.detach().reshape(-1, 4) == 0).sum(dim=1) >= 2).all()


def test_gradual_two_four_stays_a_subset_of_two_four(bert_dir: Path):
    model = load(bert_dir)
    pruner = SparsityPruner(
        model, SparsityConfig(target=0.5, pattern="2:4", begin_step=0, end_step=4)
    )
    previous = zeros(model)
    for step in range(1, 5):
        pruner.on_step(step)
        n = sparsity_report(model)["encoder_parameters"]
        assert abs(pruner.current_sparsity() - pruner.target_at(step)) <= 1 / n
        current = zeros(model)
        for name, z in current.items():
            assert (z.reshape(-1, 4).sum(dim=1) <= 2).all()
            assert z[previous[name]].all()  # pruned weights stay pruned
        previous = current
    assert sparsity_report(model)["groups_2_4"] == 1.0


def test_embeddings_norms_biases_and_head_are_untouched(bert_dir: Path):
    model = load(bert_dir)
    prunable = {name for name, _ in prunable_weights(model)}
    others = {n: p.detach().clone() for n, p in model.named_parameters() if n not in prunable}
    assert any("embeddings" in n for n in others) and any("classifier" in n for n in others)
    assert any("pooler" in n for n in others) and any("LayerNorm" in n for n in others)
    SparsityPruner(model, one_shot(0.8)).on_step(1)
    for name, param in model.named_parameters():
        if name in others:
            assert torch.equal(param.detach(), others[name]), name


def test_masks_are_frozen_after_end_step(bert_dir: Path):
    model = load(bert_dir)
    pruner = SparsityPruner(
        model, SparsityConfig(target=0.8, begin_step=0, end_step=2, update_every=1)
    )
    pruner.on_step(1)
    pruner.on_step(2)
    assert pruner.frozen
    frozen = zeros(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(5, len(VOCAB), (4, 8))
    model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    optimizer.step()
    # The optimizer does resurrect pruned weights: re-applying the masks is needed.
    assert any(not z.all() for z in (zeros(model)[n][frozen[n]] for n in frozen))
    pruner.on_step(3)
    assert all(torch.equal(zeros(model)[n], frozen[n]) for n in frozen)
    # New magnitudes would give other masks if they were recomputed; frozen ones ignore them.
    with torch.no_grad():
        for _, w in prunable_weights(model):
            w.copy_(torch.randn_like(w))
    pruner.on_step(50)
    assert all(torch.equal(zeros(model)[n], frozen[n]) for n in frozen)


@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "activation"])
def test_state_dict_round_trip_resumes_exactly(bert_dir: Path, criterion: str):
    config = SparsityConfig(
        target=0.8, begin_step=0, end_step=6, update_every=2, criterion=criterion
    )

    def perturb(model: nn.Module, step: int) -> None:
        # Stands in for a training step: the same batch, update and gradients on both runs.
        generator = torch.Generator().manual_seed(step)
        with torch.no_grad():
            model.train()
            torch.manual_seed(step)  # the same dropout masks too
            model(input_ids=torch.randint(5, len(VOCAB), (2, 8), generator=generator))
            for _, w in prunable_weights(model):
                w.add_(0.02 * torch.randn(w.shape, generator=generator))
                w.grad = torch.randn(w.shape, generator=generator)

    model = load(bert_dir)
    pruner = SparsityPruner(model, config)
    for step in range(1, 4):
        perturb(model, step)
        pruner.on_step(step)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "pruner": pruner.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed_model = load(bert_dir)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = SparsityPruner(resumed_model, config)
    resumed.load_state_dict(checkpoint["pruner"])
    assert all(torch.equal(resumed.masks()[n], m) for n, m in pruner.masks().items())
    assert resumed.current_sparsity() == pruner.current_sparsity() > 0
    for step in range(4, 9):
        for m, p in ((model, pruner), (resumed_model, resumed)):
            perturb(m, step)
            p.on_step(step)
    assert resumed.frozen and pruner.frozen
    assert all(torch.equal(resumed.masks()[n], m) for n, m in pruner.masks().items())
    with pytest.raises(ValueError, match="2:4"):
        SparsityPruner(load(bert_dir), one_shot(0.5, "2:4")).load_state_dict(checkpoint["pruner"])
    other = "magnitude" if criterion == "taylor" else "taylor"
    with pytest.raises(ValueError, match="scores weights by"):
        SparsityPruner(
            load(bert_dir), SparsityConfig(**{**config.__dict__, "criterion": other})
        ).load_state_dict(checkpoint["pruner"])


def test_taylor_prunes_the_lowest_w_times_grad_over_all_matrices(bert_dir: Path):
    model = load(bert_dir)
    tokens = torch.randint(5, len(VOCAB), (4, 12))
    model(input_ids=tokens, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    named = prunable_weights(model)
    # A planted weight: the largest of its matrix, but the loss does not feel it.
    planted = named[0][1]
    with torch.no_grad():
        planted[0, 0] = 10 * planted.abs().max()
    planted.grad[0, 0] = 0.0
    expected = torch.cat([(w.detach() * w.grad).abs().flatten() for _, w in named])
    pruner = SparsityPruner(model, one_shot(0.5, criterion="taylor", scope="global"))
    pruner.on_step(1)
    assert planted[0, 0] == 0
    pruned = torch.cat([(w.detach() == 0).flatten() for _, w in named])
    assert int(pruned.sum()) == round(0.5 * pruned.numel())
    assert expected[~pruned].min() >= expected[pruned].max()


def test_fold_saves_a_plain_model_that_reloads_with_the_same_zeros(bert_dir: Path, tmp_path: Path):
    model = load(bert_dir)
    pruner = SparsityPruner(model, one_shot(0.8))
    pruner.on_step(1)
    pruner.fold()
    with pytest.raises(RuntimeError):
        pruner.on_step(2)
    model.save_pretrained(tmp_path)
    reloaded = load(tmp_path)
    assert set(reloaded.state_dict()) == set(load(bert_dir).state_dict())
    assert all(torch.equal(zeros(reloaded)[n], z) for n, z in zeros(model).items())
    assert sparsity_report(reloaded)["sparsity"] == pytest.approx(0.8, abs=1e-4)
    model.eval()
    reloaded.eval()
    ids = torch.randint(5, len(VOCAB), (3, 10))
    with torch.inference_mode():
        assert torch.allclose(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_compressed_size_shows_the_zeros(bert_dir: Path, tmp_path: Path):
    dense = load(bert_dir)
    dense.save_pretrained(tmp_path / "dense")
    sparse = load(bert_dir)
    pruner = SparsityPruner(sparse, one_shot(0.8))
    pruner.on_step(1)
    pruner.fold()
    sparse.save_pretrained(tmp_path / "sparse")
    dense_size = compressed_size_bytes(tmp_path / "dense")
    sparse_size = compressed_size_bytes(tmp_path / "sparse")
    # 80% of most of the model's weights are zeros: well under three quarters the size.
    assert sparse_size < 0.75 * dense_size
    (weights,) = (tmp_path / "sparse").glob("*.safetensors")
    # what `gzip -6` writes, to the byte
    expected = len(gzip.compress(weights.read_bytes(), compresslevel=6, mtime=0))
    assert compressed_size_bytes(weights) == expected


# --- end to end -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criterion", "scope"),
    [("magnitude", "per_matrix"), ("taylor", "global"), ("activation", "per_matrix")],
)
def test_training_with_the_pruner_reaches_the_target(
    bert_dir: Path, tmp_path: Path, criterion: str, scope: str
):
    torch.manual_seed(0)
    data = make_tiny_dataset(tmp_path / "data.jsonl", n=96, seed=1)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    model = load(bert_dir)
    total_steps = 12
    config = SparsityConfig(
        target=0.8, begin_step=2, end_step=8, update_every=2, criterion=criterion, scope=scope
    )
    pruner = SparsityPruner(model, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    n = sparsity_report(model)["encoder_parameters"]
    rng = random.Random(0)
    previous = zeros(model)
    last_target = 0.0
    model.train()
    for step in range(1, total_steps + 1):
        batch = rng.sample(rows, 16)
        inputs = tokenizer([r["text"] for r in batch], padding=True, return_tensors="pt")
        labels = torch.tensor([int(r["label"] == "positive") for r in batch])
        loss = model(**inputs, labels=labels).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.on_step(step)
        if step in (2, 4, 6, 8):
            last_target = pruner.target_at(step)
        report = sparsity_report(model)
        assert abs(report["sparsity"] - last_target) <= 1 / n, step
        current = zeros(model)
        assert all(z[previous[name]].all() for name, z in current.items())
        previous = current
    assert pruner.frozen
    assert abs(sparsity_report(model)["sparsity"] - 0.8) <= 1 / n
