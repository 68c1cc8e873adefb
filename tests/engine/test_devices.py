"""training.devices on a worker: how many processes train, and the report saying so."""

from __future__ import annotations

import os

import pytest
import torch

from tests.engine.conftest import RecordingCallback, make_spec
from workers.engine.compress import compress
from workers.engine.runtime import resolve_devices
from workers.engine.spec import EngineInputError
from workers.engine.validate import validate_spec

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
CORES = len(os.sched_getaffinity(0))


def test_a_cpu_worker_trains_in_one_process_unless_asked() -> None:
    assert resolve_devices(None, CPU, batch_size=32, accumulation=1).used == 1
    two = resolve_devices(min(2, CORES), CPU, batch_size=32, accumulation=1)
    assert (two.used, two.warning) == (min(2, CORES), None)


def test_more_devices_than_the_worker_has_are_clamped_with_a_warning() -> None:
    many = resolve_devices(CORES + 1, CPU, batch_size=64, accumulation=1)
    assert many.used == CORES
    assert many.warning is not None
    assert f"asked for {CORES + 1}" in many.warning
    assert f"trained on {CORES}" in many.warning


def test_a_gpu_worker_trains_on_every_gpu_unless_asked(monkeypatch) -> None:
    # The worker's GPUs are what only it knows; here it has four.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_devices(None, CUDA, batch_size=32, accumulation=1).used == 4
    assert resolve_devices(2, CUDA, batch_size=32, accumulation=1).used == 2
    eight = resolve_devices(8, CUDA, batch_size=32, accumulation=1)
    assert eight.used == 4
    assert eight.warning is not None and "this worker has 4 GPUs" in eight.warning
    # Every GPU, but a batch of 6 in 2 passes has 3 shares of an example at least.
    small = resolve_devices(None, CUDA, batch_size=6, accumulation=2)
    assert small.used == 3
    assert small.warning is not None and "3 shares" in small.warning


def test_a_spec_no_worker_could_run_is_refused(headed_teacher, tiny_splits, tmp_path) -> None:
    spec = make_spec(
        headed_teacher,
        tiny_splits,
        tmp_path,
        training={"batch_size": 4, "devices": 2, "gradient_accumulation_steps": 3},
    )
    with pytest.raises(EngineInputError, match="cannot be shared by 2 device"):
        validate_spec(spec)


@pytest.mark.skipif(CORES < 2, reason="two processes need two cores")
def test_the_report_says_how_many_devices_trained(headed_teacher, tiny_splits, tmp_path) -> None:
    spec = make_spec(
        headed_teacher,
        tiny_splits,
        tmp_path,
        training={"epochs": 1, "devices": CORES + 1, "checkpoint_every_steps": 0},
    )
    callback = RecordingCallback()
    result = compress(spec, callback)
    assert result.metrics["devices_used"] == CORES
    (warning,) = [w for w in result.metrics["warnings"] if w["code"] == "fewer_devices"]
    assert f"trained on {CORES}" in warning["message"]
    assert any(level == "warning" and "training.devices" in m for m, level, _ in callback.logs)
