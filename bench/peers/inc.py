"""Peer: Intel Neural Compressor 3.7, run by subprocess in its own environment.

The rows themselves are made by bench/inc/run_inc.py inside bench/.venv-inc (created by
bench/inc/setup.sh); this side only launches it with the common budget and reads the
rows it wrote back. If the environment is missing or the run fails, every INC row says
so (``skipped``) instead of leaving a gap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.peers.train import Budget

VENV_PYTHON = ROOT / "bench" / ".venv-inc" / "bin" / "python"
SCRIPT = ROOT / "bench" / "inc" / "run_inc.py"
# What run_inc.py makes, for the rows to name when it cannot run at all.
PLANNED = ("snip_momentum 4x1 {s:.0%}", "auto_slim FFN + model_slim")


def planned_rows(
    sparsities: tuple[float, ...], reason: str, *, ffn_sparsity: float
) -> list[dict[str, Any]]:
    names = [f"peer: INC {PLANNED[0].format(s=s)}" for s in sparsities]
    if ffn_sparsity > 0:  # 0: no auto_slim row (run_inc.py)
        names.append(f"peer: INC {PLANNED[1]}")
    return [{"method": name, "target": "-", "skipped": reason} for name in names]


def run(
    teacher_dir: Path,
    train_file: Path,
    out: Path,
    budget: Budget,
    *,
    sparsities: tuple[float, ...],
    ffn_sparsity: float,
    threads: int,
    device: str,
    timeout_s: float | None,
) -> list[dict[str, Any]]:
    if not VENV_PYTHON.is_file():
        return planned_rows(
            sparsities,
            f"{VENV_PYTHON.relative_to(ROOT)} not found: create it with bash bench/inc/setup.sh",
            ffn_sparsity=ffn_sparsity,
        )
    command = [
        str(VENV_PYTHON),
        str(SCRIPT),
        "--teacher",
        str(teacher_dir),
        "--train",
        str(train_file),
        "--out",
        str(out),
        "--epochs",
        str(budget.epochs),
        "--batch-size",
        str(budget.batch_size),
        "--learning-rate",
        str(budget.learning_rate),
        "--max-seq-length",
        str(budget.max_seq_length),
        "--seed",
        str(budget.seed),
        "--threads",
        str(threads),
        "--sparsities",
        ",".join(str(s) for s in sparsities),
        "--ffn-sparsity",
        str(ffn_sparsity),
        "--device",
        device,
    ]
    log = out.parent / "inc.log"
    out.mkdir(parents=True, exist_ok=True)
    rows_file = out / "rows.json"
    # An earlier run's rows must not pass for this one's.
    rows_file.unlink(missing_ok=True)
    try:
        with log.open("w", encoding="utf-8") as handle:
            done = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
    except subprocess.TimeoutExpired:
        done = None
    rows = json.loads(rows_file.read_text(encoding="utf-8")) if rows_file.is_file() else []
    if done is None or done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        why = "timed out" if done is None else f"exited {done.returncode}"
        reason = f"INC run {why}: {' | '.join(tail)[-400:]} (full log: {log})"
        print(f"[inc] {reason}", file=sys.stderr)
        made = {row["method"] for row in rows}
        planned = planned_rows(sparsities, reason, ffn_sparsity=ffn_sparsity)
        rows += [r for r in planned if r["method"] not in made]
    return rows
