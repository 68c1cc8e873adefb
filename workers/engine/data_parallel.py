"""Data-parallel training: one process per device, gradients averaged by PyTorch's
DistributedDataParallel (DDP).

The process that runs the job (a Celery prefork child, or ``modelpress compress``) is
rank 0 and keeps everything a job has besides the loop: the callback (progress, logs,
the stop check), checkpoints, pruning, evaluation and export. For each training loop
it starts ranks 1..N-1 as plain subprocesses (``data_parallel_helper``), hands them the
loop (``LoopPayload``: the modules, the data, the step's loss, the pruning hooks, the
state to resume from) through a file in a private temporary folder, and meets them at
a ``TCPStore`` it opened on a free port (port 0: the kernel picks one, so jobs on one
machine never collide). Subprocesses, not ``multiprocessing``: a Celery prefork child
is a daemonic process, which ``multiprocessing`` forbids to have children, and forking
a process that holds a CUDA context is not allowed.

Only rank 0 asks the callback whether to stop. When it stops (or fails) it terminates
the other ranks, which hold nothing worth keeping: every rank has the same weights,
and rank 0 checkpoints them. A rank whose parent dies exits by itself.

Every rank iterates over the same global batches (the loop's own shuffle, drawn from
the same generator); each takes its share of a batch's rows (``rank_passes``). Each
loss term of a share is weighted by the share's part of what the term averages over
(``shares.py``), so DDP's average of the ranks' gradients is the gradient of the whole
batch's loss: ``batch_size`` is the batch of an optimizer step whatever the number of
devices, and a run makes the same updates on 1 or N (up to float rounding).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel
from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

import workers
from workers.engine.data import Batch, EncodedSplit
from workers.engine.runtime import Runtime
from workers.engine.shares import Share

# A step's loss: a batch (one pass of it) and that pass's share of the batch.
StepLoss = Callable[[Batch, Share], torch.Tensor]

# Collectives and the rendezvous wait this long for a rank (a checkpoint upload on rank
# 0 holds the others at the next step's reduction).
TIMEOUT = datetime.timedelta(minutes=30)
# The other ranks import torch and load the loop before they report ready.
READY_TIMEOUT_S = 600.0
# A rank that is done exits at once; one that is not is killed after this.
EXIT_GRACE_S = 30.0
LOG_TAIL_CHARS = 2000
HELPER_MODULE = "workers.engine.data_parallel_helper"
ROOT = Path(workers.__file__).resolve().parent.parent


@dataclass
class LoopPayload:
    """What ranks 1..N-1 need to run a training loop as rank 0 runs it. Written with
    ``torch.save`` as one object, so the step's loss and the pruning hooks refer to the
    very modules that train (pickle keeps shared references shared)."""

    config: Any  # train.TrainConfig
    modules: list[nn.Module]
    data: EncodedSplit
    step_loss: StepLoss
    after_step: Callable[[int], None] | None
    resume: dict[str, Any] | None
    phase: str | None
    accumulation: int
    threads: int


# transformers 5 records hidden states and attention maps through forward hooks that a
# model installs at its first call, closures that pickle cannot write. The payload is
# written without them (nor the mark that they are there), and each model read back is
# registered as transformers registers a model it builds, so it installs them again.
_CAPTURE_HOOK = "output_capturing_hook"
_CAPTURE_MARK = "_output_capturing_hooks_installed"


def _restore_module(module: nn.Module, state: dict[str, Any]) -> None:
    module.__setstate__(state)
    if isinstance(module, PreTrainedModel):
        _CAN_RECORD_REGISTRY[module] = module._can_record_outputs


class _PayloadPickler(pickle.Pickler):
    """``torch.save``'s pickler for a payload: every module as it is but for those hooks
    (the live modules are not touched)."""

    def reducer_override(self, obj: object) -> Any:
        if not isinstance(obj, nn.Module):
            return NotImplemented
        make, args, state, *_ = obj.__reduce_ex__(2)
        state = dict(state)
        hooks = state.get("_forward_hooks") or {}
        state["_forward_hooks"] = OrderedDict(
            (key, hook)
            for key, hook in hooks.items()
            if getattr(hook, "__name__", "") != _CAPTURE_HOOK
        )
        state.pop(_CAPTURE_MARK, None)
        return make, args, state, None, None, _restore_module


# What torch.save takes as its pickle_module.
_PAYLOAD_PICKLE = types.ModuleType("modelpress_payload_pickle")
_PAYLOAD_PICKLE.Pickler = _PayloadPickler  # type: ignore[attr-defined]


def shares(count: int, parts: int) -> list[tuple[int, int]]:
    """``count`` rows cut into ``parts`` contiguous (start, end) ranges whose sizes
    differ by one at most (the first ones are the longer)."""
    size, extra = divmod(count, parts)
    bounds, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def rank_passes(rows: list[int], *, rank: int, world: int, accumulation: int) -> list[list[int]]:
    """This rank's passes over a batch's ``rows``: its contiguous share of them, cut
    into ``accumulation`` pieces (empty ones dropped). None at all for a rank whose
    share is empty (a last batch smaller than the world)."""
    start, end = shares(len(rows), world)[rank]
    mine = rows[start:end]
    return [mine[a:b] for a, b in shares(len(mine), accumulation) if b > a]


class _Trained(nn.Module):
    """The trained modules as one module, whose forward is the step's loss: what DDP
    wraps (the teacher inside the step is not a submodule, so it is not synchronised)."""

    def __init__(self, modules: list[nn.Module], step_loss: StepLoss):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self.step_loss = step_loss

    def forward(self, batch: Batch, share: Share) -> torch.Tensor:
        return self.step_loss(batch, share)


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel loop."""

    rank: int
    world: int
    device: torch.device

    def wrap(self, modules: list[nn.Module], step_loss: StepLoss) -> DistributedDataParallel:
        # find_unused_parameters: a student's projections train only with the hidden-state
        # loss, yet are always in the loop. Buffers are not broadcast: every rank built
        # them the same way and no step changes them.
        return DistributedDataParallel(
            _Trained(modules, step_loss),
            device_ids=[_cuda_index(self.device)] if self.device.type == "cuda" else None,
            find_unused_parameters=True,
            forward_sync_buffers=False,
        )

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum ``tensor`` over the ranks, in place."""
        dist.all_reduce(tensor)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]


class RankFailed(RuntimeError):
    """A rank other than 0 exited with an error; the message ends with its output."""


@dataclass
class _Helper:
    rank: int
    process: subprocess.Popen[bytes]
    log: Path

    def failure(self) -> RankFailed | None:
        code = self.process.poll()
        if code is None or code == 0:
            return None
        return RankFailed(
            f"training process {self.rank} exited with code {code}:\n{_tail(self.log)}"
        )


def _helper_devices(device: torch.device, world: int) -> list[int | None]:
    """Each other rank's GPU: the visible ones but rank 0's, in order (None on CPU)."""
    if device.type != "cuda":
        return [None] * (world - 1)
    own = _cuda_index(device)
    return [i for i in range(torch.cuda.device_count()) if i != own][: world - 1]


def _start_helpers(
    payload_path: Path, folder: Path, *, world: int, port: int, device: torch.device
) -> list[_Helper]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    cuda = device.type == "cuda"
    helpers = []
    for rank, gpu in enumerate(_helper_devices(device, world), start=1):
        log = folder / f"rank{rank}.log"
        command = [
            sys.executable,
            "-m",
            HELPER_MODULE,
            str(payload_path),
            f"--rank={rank}",
            f"--world={world}",
            f"--port={port}",
            f"--backend={backend(device)}",
            f"--parent={os.getpid()}",
        ]
        if cuda:
            # Rank 0's tensors in the payload go onto this rank's own GPU.
            command += [f"--cuda-from={_cuda_index(device)}", f"--cuda-device={gpu}"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        helpers.append(_Helper(rank, process, log))
    return helpers


def _wait_ready(store: dist.TCPStore, helpers: list[_Helper]) -> None:
    keys = [f"ready/{h.rank}" for h in helpers]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not store.check(keys):
        for helper in helpers:
            failure = helper.failure()
            if failure is not None:
                raise failure
            if helper.process.poll() == 0:
                raise RankFailed(f"training process {helper.rank} exited before it was ready")
        if time.monotonic() > deadline:
            raise RankFailed(f"the training processes were not ready in {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def _finish(helpers: list[_Helper]) -> None:
    """The loop ended on rank 0, so it ended on every rank: wait for their exit."""
    deadline = time.monotonic() + EXIT_GRACE_S
    for helper in helpers:
        try:
            helper.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            helper.process.kill()
            helper.process.wait()
        failure = helper.failure()
        if failure is not None:
            raise failure


def _stop(helpers: list[_Helper]) -> RankFailed | None:
    """Terminate the ranks still running; the failure of one that had failed by itself
    (often why rank 0 is stopping: its reduction lost a peer)."""
    for helper in helpers:
        if helper.process.poll() is None:
            helper.process.terminate()
    for helper in helpers:
        try:
            helper.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            helper.process.kill()
            helper.process.wait()
    ours = (-signal.SIGTERM, -signal.SIGKILL)
    return next(
        (h.failure() for h in helpers if h.process.returncode not in ours and h.failure()),
        None,
    )


@contextlib.contextmanager
def launch(payload: LoopPayload, runtime: Runtime) -> Iterator[Group]:
    """Rank 0's side: start the other ranks, form the process group with them and yield
    this process's ``Group``. A normal exit waits for the others to end; an exception
    (a stop request among them) terminates them first, and one that failed is named."""
    if dist.is_initialized():
        raise RuntimeError("a process group is already open in this process")
    world = runtime.devices
    store = dist.TCPStore(
        "127.0.0.1", 0, world, is_master=True, wait_for_workers=False, timeout=TIMEOUT
    )
    folder = Path(tempfile.mkdtemp(prefix="modelpress-dp-"))  # mode 0700: ours alone
    helpers: list[_Helper] = []
    try:
        payload_path = folder / "loop.pt"
        torch.save(payload, payload_path, pickle_module=_PAYLOAD_PICKLE)
        helpers = _start_helpers(
            payload_path, folder, world=world, port=store.port, device=runtime.device
        )
        _wait_ready(store, helpers)
        payload_path.unlink()
        dist.init_process_group(
            backend(runtime.device), store=store, rank=0, world_size=world, timeout=TIMEOUT
        )
        yield Group(rank=0, world=world, device=runtime.device)
        _finish(helpers)
    except BaseException as exc:
        failed = _stop(helpers)
        if failed is not None and not isinstance(exc, RankFailed):
            raise failed from exc
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        shutil.rmtree(folder, ignore_errors=True)


def join(*, rank: int, world: int, port: int, backend_name: str, device: torch.device) -> Group:
    """A helper rank's side: say it is ready, then form the process group."""
    store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=TIMEOUT)
    store.set(f"ready/{rank}", "1")
    dist.init_process_group(backend_name, store=store, rank=rank, world_size=world, timeout=TIMEOUT)
    return Group(rank=rank, world=world, device=device)
