"""The markdown tables and the latency rounds every benchmark's report shares."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch

from bench.common import load_1m
from workers.engine.evaluate import interleaved_latency_ms
from workers.engine.progress import Progress
from workers.engine.spec import NullCallback


def cell(value: Any, column: str, scores: Collection[str] = ()) -> str:
    """One value as the tables print it: scores to 4 places, latencies to 2, speed-ups
    with an x, counts with thousands separators."""
    if value is None:
        return "-"
    if column in scores:
        return f"{value:.4f}"
    if column.startswith("latency"):
        return f"{value:.2f}"
    if column.startswith("speedup"):
        return f"{value:.2f}x"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def markdown_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    cell_of: Callable[[dict[str, Any], str], str],
) -> str:
    """A row per result, the first two columns (method, target) left-aligned; a skipped
    row says why across the third column."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * 2 + "---:|" * (len(columns) - 2)]
    for row in rows:
        if "skipped" in row:
            cells = [row["method"], row.get("target", "-"), f"skipped: {row['skipped']}"]
            cells += ["-"] * (len(columns) - 3)
            cells = [c.replace("|", "\\|") for c in cells]
        else:
            cells = [cell_of(row, c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_rounds(
    runners: dict[str, Callable[[dict[str, Any]], Any]],
    tokenizer: Any,
    texts: list[str],
    results: dict[str, dict[str, Any]],
    *,
    seq_len: int,
    threads: int,
    rounds: int,
    say: Callable[[str], None],
) -> None:
    """``rounds`` interleaved CPU timings of all ``runners`` together (one forward pass
    each: a PyTorch model or an ONNX Runtime session, ``bench/runtimes.py``), PyTorch on
    ``threads`` threads (each session was made with as many); each runner's
    ``latency_ms_cpu_bs{1,32}`` is the median over rounds (every round's value kept),
    and ``results["_latency"]`` has the load average around each round."""
    progress = Progress(NullCallback())
    per_round = []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for index in range(rounds):
            before = load_1m()
            with torch.inference_mode():
                latency = interleaved_latency_ms(
                    runners, tokenizer, texts, seq_len=seq_len, progress=progress
                )
            per_round.append({"latency": latency, "load_1m": [before, load_1m()]})
            say(f"latency round {index + 1}/{rounds} done ({len(runners)} models)")
    finally:
        torch.set_num_threads(previous)
    for name in runners:
        for bs in (1, 32):
            values = [r["latency"][name][bs] for r in per_round]
            results[name][f"latency_ms_cpu_bs{bs}"] = statistics.median(values)
            results[name][f"latency_rounds_bs{bs}"] = [round(v, 3) for v in values]
    results["_latency"] = {"load_1m_per_round": [r["load_1m"] for r in per_round]}
