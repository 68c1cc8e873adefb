"""The int8 simulation of quantization-aware distillation against ONNX Runtime itself:
the simulated student must compute what the engine's int8 export computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from workers.engine import onnx_export as ox
from workers.engine.fake_quant import (
    Int8Linear,
    QuantAware,
    begin_step,
    per_channel_int8,
    per_tensor_uint8,
    restore,
    simulate,
    simulated,
)


def _export_linear(
    tmp_path: Path, reduce_range: bool | None = None
) -> tuple[nn.Linear, torch.Tensor, Path]:
    """A random Linear exported and quantized; ``reduce_range`` None: the engine's default."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 8).eval()
    x = torch.randn(2, 5, 16)
    fp32 = tmp_path / "linear.onnx"
    torch.onnx.export(
        layer,
        (x,),
        str(fp32),
        input_names=["x"],
        output_names=["y"],
        dynamo=True,
        dynamic_shapes=({0: "b", 1: "s"},),
    )
    q = tmp_path / f"linear-{reduce_range}.onnx"
    if reduce_range is None:
        ox.quantize_int8(fp32, q)
    else:
        ox.quantize_int8(fp32, q, reduce_range=reduce_range)
    return layer, x, q


def _integer_results(layer: nn.Linear, x: torch.Tensor, q: Path) -> dict[str, np.ndarray]:
    """The layer as ONNX Runtime ran it, and two NumPy emulations of its integer
    arithmetic: exact, and with uint8 x int8 pairs added into int16 with saturation (an
    x86 CPU without VNNI)."""
    graph = onnx.load(str(q))
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    weight = next(v for k, v in inits.items() if k.endswith("_quantized")).astype(np.int64)
    scale = next(v for k, v in inits.items() if k.endswith("_scale"))
    xn = x.numpy().reshape(-1, 16).astype(np.float64)
    low, high = min(0.0, xn.min()), max(0.0, xn.max())
    step = np.float32((high - low) / 255)
    zero = np.clip(np.round(-low / step), 0, 255)
    qx = np.clip(np.round(xn / step) + zero, 0, 255).astype(np.int64)
    bias = layer.bias.detach().numpy()
    products = qx[:, :, None] * weight[None, :, :]
    pairs = products.reshape(len(qx), 8, 2, -1).sum(axis=2)
    saturated = np.clip(pairs, -32768, 32767).sum(axis=1)
    session = ox.session(q, threads=1)
    return {
        "ort": session.run(None, {"x": x.numpy()})[0].reshape(len(qx), -1),
        "exact": ((qx - zero) @ weight) * step * scale + bias,
        "saturating": (saturated - zero * weight.sum(axis=0)) * step * scale + bias,
        "weight_range": np.array([weight.min(), weight.max()]),
    }


def test_the_engines_int8_weights_are_seven_bit_and_exact_on_any_cpu(tmp_path: Path):
    layer, x, q = _export_linear(tmp_path)
    got = _integer_results(layer, x, q)
    assert got["weight_range"].tolist() == [-64, 64]
    assert np.abs(got["ort"] - got["exact"]).max() < 1e-5
    # And the simulation is that arithmetic, in float.
    with torch.no_grad():
        sim = nn.functional.linear(per_tensor_uint8(x), per_channel_int8(layer.weight), layer.bias)
    assert np.abs(sim.numpy().reshape(got["ort"].shape) - got["ort"]).max() < 1e-5


def test_eight_bit_weights_are_exact_or_saturate_by_cpu(tmp_path: Path):
    """Why the engine ships 7-bit weights: with 8-bit ones, what ONNX Runtime computes
    depends on the CPU (exact with VNNI, saturated without); either way it is one of the
    two emulations, which this test tells apart."""
    layer, x, q = _export_linear(tmp_path, reduce_range=False)
    got = _integer_results(layer, x, q)
    assert got["weight_range"].tolist() == [-127, 127]
    off_exact = np.abs(got["ort"] - got["exact"]).max()
    off_saturating = np.abs(got["ort"] - got["saturating"]).max()
    assert min(off_exact, off_saturating) < 1e-5
    # The random layer's inputs do overflow int16 in pairs: the two readings differ.
    assert np.abs(got["exact"] - got["saturating"]).max() > 0.05


def _tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        # Weights wide enough that int8 rounding moves the logits measurably.
        initializer_range=0.3,
    )
    return BertForSequenceClassification(config).eval()


def test_the_simulated_student_computes_what_its_int8_export_computes(tmp_path: Path):
    model = _tiny_bert()
    ids = torch.randint(1, 100, (4, 12))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    ox.export_onnx(model, batch, tmp_path / "m.onnx")
    ox.quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx")
    session = ox.session(tmp_path / "q.onnx", threads=1)
    off_fp32, off_sim = [], []
    for row in range(4):  # batch 1: ORT's dynamic ranges are per call
        one = {k: v[row : row + 1] for k, v in batch.items()}
        int8 = ox.ort_logits(session, one)
        with torch.no_grad():
            fp32 = model(**one).logits
            assert simulate(model) == 2 * 6 + 2 + 3  # 6 Linear a layer, pooler, head; 3 tables
            sim = model(**one).logits
            restore(model)
        off_fp32.append((fp32 - int8).abs().max().item())
        off_sim.append((sim - int8).abs().max().item())
    assert max(off_fp32) > 0.05  # int8 moves these logits ...
    assert max(off_sim) < 1e-4  # ... and the simulation moves them exactly as it does


def test_simulate_keeps_parameters_and_names_and_passes_gradients_through():
    model = _tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    simulate(model)
    assert simulated(model)
    assert type(model.classifier) is Int8Linear
    assert list(model.state_dict()) == list(before)
    ids = torch.randint(1, 100, (2, 8))
    model.train()
    model(input_ids=ids).logits.sum().backward()
    grad = model.bert.encoder.layer[0].intermediate.dense.weight.grad
    assert grad is not None and grad.abs().sum() > 0  # straight through the rounding
    restore(model)
    assert not simulated(model) and type(model.classifier) is nn.Linear
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_all_zero_tensor_stays_zero():
    assert torch.equal(per_tensor_uint8(torch.zeros(3, 4)), torch.zeros(3, 4))
    assert torch.equal(per_channel_int8(torch.zeros(3, 4)), torch.zeros(3, 4))


@pytest.mark.parametrize(
    ("steps", "fraction", "first"), [(100, 0.2, 81), (100, 1.0, 1), (10, 0.01, 10), (1, 0.5, 1)]
)
def test_the_int8_part_is_the_last_fraction_of_the_steps(steps, fraction, first):
    assert begin_step(steps, fraction) == first


def test_the_hook_switches_on_before_the_first_int8_step_and_catches_up_on_resume():
    model = _tiny_bert()
    hook = QuantAware(model, begin_step=5)
    hook.catch_up(0)
    assert not simulated(model)
    hook.on_step(3)  # the next forward is step 4
    assert not simulated(model)
    hook.on_step(4)  # the next is step 5: int8 from here
    assert simulated(model)
    resumed = _tiny_bert()
    QuantAware(resumed, begin_step=5).catch_up(7)
    assert simulated(resumed)
    with pytest.raises(ValueError, match="fraction"):
        begin_step(10, 0.0)


def test_the_hook_travels_with_its_model_to_another_process(tmp_path: Path):
    """A data-parallel loop hands modules and step hooks to its other ranks as one
    torch.save payload (data_parallel.LoopPayload): the hook read back must switch the
    model read back with it, not a copy."""
    model = _tiny_bert()
    torch.save({"modules": [model], "after_step": QuantAware(model, begin_step=2)}, tmp_path / "p")
    payload = torch.load(tmp_path / "p", weights_only=False)
    payload["after_step"].on_step(1)
    assert simulated(payload["modules"][0]) and not simulated(model)
