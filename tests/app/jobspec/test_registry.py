"""The registry helper every part of the engine registers with (app/jobspec/registry.py)."""

from __future__ import annotations

import pytest

from app.jobspec.errors import EngineInputError
from app.jobspec.registry import Registry


def test_parts_are_registered_once_and_found_by_name():
    shapes: Registry[type] = Registry("shape", param="target.shape")

    @shapes.register("round")
    class Round:
        pass

    @shapes.register()
    class Oval:
        name = "oval"

    shapes.add("square", int)
    assert shapes.names() == ("round", "oval", "square")
    assert shapes.get("round") is Round and "square" in shapes
    with pytest.raises(ValueError, match="'round' is registered twice"):
        shapes.add("round", str)


def test_an_unknown_name_says_which_are_known():
    shapes: Registry[int] = Registry("shape", param="target.shape")
    shapes.add("round", 1)
    with pytest.raises(EngineInputError) as info:
        shapes.get("egg")
    error = info.value
    assert (error.code, error.param) == ("not_supported_yet", "target.shape")
    assert error.message == "shape 'egg' is not available; available: 'round'."
    assert shapes.get("egg", None) is None  # with a default, as a dict's get
