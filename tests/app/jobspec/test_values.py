"""The rules on a target's and an export's values, as the API's schema and the engine
both run them (app/jobspec/values.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.jobspec import values, vocabulary
from app.jobspec.errors import EngineInputError
from workers.engine.spec import TargetSpec


def _refused(target: TargetSpec) -> EngineInputError:
    with pytest.raises(EngineInputError) as info:
        values.check_target(target)
    return info.value


def test_params_ratio_is_in_the_open_interval_from_0_to_1():
    # 1 would be a student as large as its teacher; the API and the engine both refuse it.
    assert values.check_target(TargetSpec(params_ratio=0.999)) == "params_ratio"
    assert values.check_target(TargetSpec(params_ratio=1e-6)) == "params_ratio"
    for ratio in (1.0, 0.0, -0.5, 1.5, float("nan")):
        error = _refused(TargetSpec(params_ratio=ratio))
        assert (error.code, error.param) == ("bad_params_ratio", "target.params_ratio")
        assert "in (0, 1)" in error.message


def test_the_schema_takes_its_bounds_from_here():
    assert values.PARAMS_RATIO.field() == {"gt": 0.0, "lt": 1.0}
    assert values.SPEEDUP.field() == {"gt": 1.0, "le": 100.0}
    assert values.UNSTRUCTURED_SPARSITY.field() == {"ge": 0.0, "lt": 1.0}
    assert 100.0 in values.SPEEDUP and 1.0 not in values.SPEEDUP
    assert float("inf") not in values.SPEEDUP
    assert str(values.SPEEDUP) == "(1, 100]" and str(values.UNSTRUCTURED_SPARSITY) == "[0, 1)"


@pytest.mark.parametrize(
    ("target", "code", "says"),
    [
        # The engine's TargetSpec holds no sweep kind: it is told of the kinds it has.
        (TargetSpec(), "missing_target", "give exactly one of params_ratio, sparsity or speedup"),
        (TargetSpec(params_ratio=0.5, speedup=2.0), "missing_target", "exactly one"),
        (TargetSpec(sparsity=1.0), "bad_sparsity", "in (0, 1)"),
        (TargetSpec(sparsity=0.6, pattern="2:4"), "bad_sparsity", "its sparsity is 0.5"),
        (TargetSpec(speedup=101.0), "bad_speedup", "(1, 100]"),
        (TargetSpec(params_ratio=0.5, pattern="2:4"), "bad_target", "pattern applies only"),
        (TargetSpec(params_ratio=0.5, runtime="onnxruntime"), "bad_target", "runtime applies"),
    ],
)
def test_a_target_that_does_not_hold_together_is_refused(target, code, says):
    error = _refused(target)
    assert error.code == code and says in error.message


def test_defaults_where_they_do_not_apply_are_not_a_pattern_or_runtime_asked_for():
    # The engine's TargetSpec fills them in whatever the kind.
    plain = TargetSpec(params_ratio=0.5)
    assert (plain.pattern, plain.runtime) == (
        vocabulary.DEFAULT_PATTERN,
        vocabulary.DEFAULT_RUNTIME,
    )
    assert values.check_target(plain) == "params_ratio"
    assert values.check_target(TargetSpec(sparsity=0.5, pattern="2:4")) == "sparsity"


@pytest.mark.parametrize(
    ("formats", "code"),
    [
        ((), "bad_export"),
        (("onnx", "onnx"), "bad_export"),
        (("tflite",), "unsupported_export_format"),
    ],
)
def test_export_formats_are_known_and_listed_once(formats, code):
    with pytest.raises(EngineInputError) as info:
        values.check_formats(formats)
    assert (info.value.code, info.value.param) == (code, "export.formats")
    values.check_formats(vocabulary.EXPORT_FORMATS)


@dataclass
class _SchemaTarget:
    """A target as the API's schema holds it, sweep kinds included."""

    params_ratio: float | None = None
    sparsity: float | None = None
    pattern: str | None = None
    speedup: float | None = None
    runtime: str | None = None
    min_retention: float | None = None
    max_latency_ms: float | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    budget: object | None = None


def test_the_sweep_kinds_and_their_ranges():
    assert values.check_target(_SchemaTarget(min_retention=1.0)) == "min_retention"
    assert values.check_target(_SchemaTarget(min_retention=0.99, runtime="onnxruntime")) == (
        "min_retention"
    )
    assert values.check_target(_SchemaTarget(max_latency_ms=5.0, batch_size=8, seq_len=64)) == (
        "max_latency_ms"
    )
    for target, param in [
        (_SchemaTarget(min_retention=0.0), "target.min_retention"),
        (_SchemaTarget(min_retention=1.01), "target.min_retention"),
        (_SchemaTarget(max_latency_ms=0.0), "target.max_latency_ms"),
        (_SchemaTarget(max_latency_ms=float("inf")), "target.max_latency_ms"),
    ]:
        error = _refused(target)
        assert error.param == param and error.code == f"bad_{param.split('.')[1]}"
    error = _refused(_SchemaTarget(min_retention=0.99, max_latency_ms=5.0))
    assert error.code == "missing_target"
    assert "params_ratio, sparsity, speedup, min_retention or max_latency_ms" in error.message


@pytest.mark.parametrize(
    ("target", "param", "says"),
    [
        (_SchemaTarget(params_ratio=0.5, runtime="onnxruntime"), "target.runtime", "speedup, "),
        (_SchemaTarget(min_retention=0.99, batch_size=8), "target.batch_size", "max_latency_ms"),
        (_SchemaTarget(speedup=2.0, seq_len=64), "target.seq_len", "max_latency_ms"),
        (_SchemaTarget(speedup=2.0, budget={}), "target.budget", "min_retention or max_"),
    ],
)
def test_a_sweep_field_belongs_to_its_kinds(target, param, says):
    error = _refused(target)
    assert (error.code, error.param) == ("bad_target", param) and says in error.message
