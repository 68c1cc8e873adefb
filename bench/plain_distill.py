"""The distillation step written by hand, as a short training script would: the reference
that bench/gpu_throughput.py holds the engine's step against.

The same objective as the engine's default (0.5 x cross-entropy + 0.5 x T^2 x KL on the
logits at T = 2, plus the MSE of mapped hidden states through linear projections where
the widths differ), AdamW with the engine's weight-decay groups, the gradient clipped to
norm 1, a linear schedule: what any loop that trains this student would do. What it
leaves out is what the engine adds around it: its data shares, progress and stop
checks, checkpoint hooks, the loss curve.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

TEMPERATURE = 2.0
ALPHA = 0.5
MAX_GRAD_NORM = 1.0


def rows_as_tensors(input_ids: list[list[int]]) -> list[torch.Tensor]:
    """Each row tokenised once, as a tensor (what a dataset's ``set_format`` gives)."""
    return [torch.tensor(row, dtype=torch.long) for row in input_ids]


def padded(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(r) for r in rows])
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    return ids, mask


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[None]:
    if device.type == "cuda" and bf16:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    batches: list[list[int]],
    *,
    rows: list[torch.Tensor],
    labels: torch.Tensor,
    pad_id: int,
    layer_map: list[int] | None,
    cached_logits: torch.Tensor | None,
    device: torch.device,
    bf16: bool,
    fused_adamw: bool,
    learning_rate: float,
) -> float:
    """One pass over ``batches`` (lists of row indices); the last step's loss.

    ``layer_map``: student layer i learns teacher layer layer_map[i]'s hidden state
    (None: no hidden-state loss). ``cached_logits``: the teacher's logits per row,
    computed beforehand (the teacher does not run).
    """
    pairs = [(0, 0), *((s + 1, t + 1) for s, t in enumerate(layer_map))] if layer_map else []
    s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
    projections = nn.ModuleList(
        nn.Identity() if s_width == t_width else nn.Linear(s_width, t_width) for _ in pairs
    ).to(device)
    decay, no_decay = [], []
    for module in (student, projections):
        for param in module.parameters():
            (decay if param.ndim >= 2 else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        fused=True if fused_adamw else None,
    )
    total = len(batches)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / warmup if step < warmup else (total - step) / max(1, total - warmup)
        ),
    )
    student.train()
    projections.train()
    teacher.eval()
    loss = torch.zeros(())
    for indices in batches:
        ids, mask = padded([rows[i] for i in indices], pad_id)
        ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        target = labels[indices].to(device, non_blocking=True)
        hidden = bool(pairs)
        teacher_hidden: tuple[torch.Tensor, ...] = ()
        if cached_logits is not None:
            teacher_logits = cached_logits[indices].to(device, non_blocking=True)
        else:
            with torch.no_grad(), autocast(device, bf16):
                out = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=hidden)
            teacher_logits = out.logits
            teacher_hidden = out.hidden_states if hidden else ()
        with autocast(device, bf16):
            out = student(input_ids=ids, attention_mask=mask, output_hidden_states=hidden)
        logits = out.logits.float()
        loss = ALPHA * F.cross_entropy(logits, target)
        kl = F.kl_div(
            F.log_softmax(logits / TEMPERATURE, dim=-1),
            F.softmax(teacher_logits.float() / TEMPERATURE, dim=-1),
            reduction="batchmean",
        )
        loss = loss + (1 - ALPHA) * TEMPERATURE**2 * kl
        if hidden:
            weights = mask.unsqueeze(-1).float()
            mse = sum(
                (
                    (projections[i](out.hidden_states[s]).float() - teacher_hidden[t].float())
                    .pow(2)
                    .mean(dim=-1, keepdim=True)
                    * weights
                ).sum()
                / weights.sum()
                for i, (s, t) in enumerate(pairs)
            )
            loss = loss + mse / len(pairs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(list(_parameters(optimizer)), MAX_GRAD_NORM)
        optimizer.step()
        schedule.step()
    return float(loss.item())  # one read (and GPU sync) at the end


def _parameters(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for group in optimizer.param_groups:
        yield from group["params"]
