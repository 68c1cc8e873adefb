"""scripts/gpu_carry.py: a model travels as float16 at about half its bytes and comes
back as float32 within float16's rounding of every weight, with its other files; the
carried copy says what it was made from."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from scripts.gpu_carry import WEIGHTS, pack_model, sha256, unpack_model
from tests.tiny import make_tiny_bert


def test_a_model_travels_as_float16_and_comes_back_as_float32(tmp_path: Path) -> None:
    source = make_tiny_bert(tmp_path / "base", num_labels=None)
    facts = pack_model(source, tmp_path / "carry")
    assert facts["sha256_float32"] == sha256(source / WEIGHTS)
    assert facts["bytes_float16"] < 0.6 * facts["bytes_float32"]
    packed = load_file(str(tmp_path / "carry" / WEIGHTS))
    assert {t.dtype for t in packed.values() if t.is_floating_point()} == {torch.float16}

    carried = unpack_model(tmp_path / "carry", tmp_path / "back", {"model": facts})
    original = load_file(str(source / WEIGHTS))
    back = load_file(str(tmp_path / "back" / WEIGHTS))
    assert back.keys() == original.keys()
    for name, weight in original.items():
        assert back[name].dtype == weight.dtype and back[name].shape == weight.shape
        if weight.is_floating_point():
            # float16 keeps 11 significant bits: within 2^-11 of each normal value.
            error = (back[name] - weight).abs()
            assert bool((error <= weight.abs() * 2**-11 + 2**-24).all()), name
        else:
            assert torch.equal(back[name], weight), name
    others = {p.name for p in source.iterdir() if p.is_file() and p.name != WEIGHTS}
    assert others and others <= {p.name for p in (tmp_path / "back").iterdir()}
    written = json.loads((tmp_path / "back" / "carried.json").read_text(encoding="utf-8"))
    assert written == carried and written["sha256_float32"] == facts["sha256_float32"]
