"""Rank 1..N-1 of a data-parallel training loop (``data_parallel.launch`` starts it):
``python -m workers.engine.data_parallel_helper PAYLOAD --rank R --world N ...``.

It loads the loop rank 0 wrote, puts it on its own device, runs it with rank 0's
settings and exits; it reports nothing (rank 0 does) and is stopped by rank 0. The
payload holds modules and the step's loss as objects, so it is read with pickle: it is
the file rank 0 of this very job wrote a moment before into a folder only this user
can open, never anything a user sent.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

import torch

from workers.engine.data_parallel import LoopPayload, join
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import NullCallback
from workers.engine.train import LoopHooks, run_loop

PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Ranks other than 0 draw dropout from their own stream, seeded from the run's seed.
RANK_SEED_STRIDE = 1_000_003


class _Quiet(Progress):
    """Reports nothing and never stops by itself: rank 0 does both."""

    def __init__(self) -> None:
        super().__init__(NullCallback())

    def within(self, fraction: float) -> None:
        pass


def _exit_with_parent(parent: int) -> None:
    """Rank 0 terminates this process when it stops; if rank 0 is killed outright (the
    worker's child SIGKILLed), this one must not wait in a reduction for 30 minutes. On
    Linux the kernel kills it when its parent dies (``PR_SET_PDEATHSIG``), whatever it is
    doing; elsewhere a thread watches the parent (which needs the interpreter's lock, so
    it acts between calls into torch, not inside them)."""
    libc = ctypes.util.find_library("c") if sys.platform == "linux" else None
    if libc is not None and ctypes.CDLL(libc).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
        if os.getppid() != parent:  # it died before this process asked to follow it
            os._exit(3)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _load(path: str, device: torch.device, cuda_index: int | None) -> LoopPayload:
    # Rank 0's GPU tensors onto this rank's GPU; CPU tensors (RNG states, cached logits)
    # stay on the CPU.
    location = {f"cuda:{cuda_index}": str(device)} if cuda_index is not None else None
    return torch.load(path, map_location=location, weights_only=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("payload")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cuda-from", type=int, default=None, help="rank 0's GPU index")
    parser.add_argument("--cuda-device", type=int, default=None, help="this rank's GPU index")
    args = parser.parse_args(argv)
    _exit_with_parent(args.parent)
    cuda = args.backend == "nccl"
    device = torch.device("cuda", args.cuda_device) if cuda else torch.device("cpu")
    if cuda:
        # "cuda" without an index (the engine's Runtime) is then this rank's GPU.
        torch.cuda.set_device(device)
    payload = _load(args.payload, device, args.cuda_from)
    torch.set_num_threads(payload.threads)
    # Not rank 0's stream (a resumed rank 0 restores its own): dropout masks differ
    # between ranks as they would between the rows of one process's batch.
    step = int(payload.resume["step"]) if payload.resume is not None else 0
    torch.manual_seed(payload.config.seed + RANK_SEED_STRIDE * args.rank + step)
    group = join(
        rank=args.rank, world=args.world, port=args.port, backend_name=args.backend, device=device
    )
    progress = _Quiet()
    if payload.phase is not None:
        progress.start_phase(payload.phase)
    run_loop(
        config=payload.config,
        modules=payload.modules,
        data=payload.data,
        step_loss=payload.step_loss,
        runtime=Runtime(device, devices=args.world, accumulation=payload.accumulation),
        progress=progress,
        hooks=LoopHooks(resume=payload.resume, after_step=payload.after_step),
        group=group,
    )
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
