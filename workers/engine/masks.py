"""Masks on plain score tensors: which weights to zero for a sparsity level.

A score tensor is shaped like its weight and says how much each weight matters
(``criteria/``); scores are never negative. A mask is a bool tensor shaped like
its weight, True where the weight is kept. Every function takes the previous masks and
ranks already-pruned weights below every live one, so a rising sparsity only adds zeros:
a pruned weight is never revived (Zhu & Gupta 2017), and a mask update never undoes work
the optimizer did on the remaining weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PRUNED_SCORE = -1.0  # below any score, so earlier pruning decisions are kept first


def allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` pruned weights over matrices of ``sizes`` elements, as uniformly as
    whole numbers allow.

    Matrix i's j-th pruned weight sits at position (j + 1/2) / n_i; the ``total`` lowest
    positions win, ties going to the lower matrix index (Webster's apportionment). So
    each matrix gets within one weight of ``total * n_i / N``, the sum is exactly
    ``total``, and raising ``total`` never lowers any matrix's count, which keeps masks
    monotone under a rising schedule.
    """
    n_total = sum(sizes)
    if any(n <= 0 for n in sizes):
        raise ValueError(f"matrix sizes must be positive, got {list(sizes)}")
    if not 0 <= total <= n_total:
        raise ValueError(f"cannot prune {total} of {n_total} weights")
    # Every slot at position <= total / N: a prefix of the (position, index) order,
    # within one slot per matrix of the answer; then walk that order to exactly total.
    counts = [min(n, (2 * total * n + n_total) // (2 * n_total)) for n in sizes]
    while sum(counts) < total:
        # Next slot of matrix i is at (2 c_i + 1) / (2 n_i); compare fractions exactly.
        best = None
        for i, (c, n) in enumerate(zip(counts, sizes, strict=True)):
            if c < n and (best is None or (2 * c + 1) * sizes[best] < (2 * counts[best] + 1) * n):
                best = i
        assert best is not None
        counts[best] += 1
    while sum(counts) > total:
        worst = None
        for i, (c, n) in enumerate(zip(counts, sizes, strict=True)):
            if c > 0 and (
                worst is None or (2 * c - 1) * sizes[worst] >= (2 * counts[worst] - 1) * n
            ):
                worst = i
        assert worst is not None
        counts[worst] -= 1
    return counts


def _ranked(scores: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    return scores.detach().float().masked_fill(~previous, PRUNED_SCORE)


def lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor, True at the ``k`` lowest of a 1-D ``scores``; ties go to the lower
    index, so the choice is deterministic. kthvalue, not topk: several times faster for
    the large k that pruning asks for."""
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    if k == 0:
        return chosen
    threshold = scores.kthvalue(k).values
    torch.lt(scores, threshold, out=chosen)
    equal = scores == threshold
    need, ties = k - int(chosen.sum()), int(equal.sum())
    # Usually the threshold value occurs once and is taken whole; only real ties (zeros,
    # already-pruned weights) need the cumulative count.
    chosen |= equal if need == ties else equal & (equal.cumsum(0) <= need)
    return chosen


def unstructured_masks(
    scores: Sequence[torch.Tensor],
    previous: Sequence[torch.Tensor],
    sparsity: float,
    *,
    scope: str = "per_matrix",
) -> list[torch.Tensor]:
    """Zero the lowest-scoring weights: ``round(sparsity * N)`` of the N in all.

    ``scope`` "per_matrix" zeroes the same fraction of every matrix. Magnitudes need it:
    matrices differ in scale (query/key vs. value and FFN projections, and in
    Llama-family models the projections feeding a residual), and one global |w|
    threshold can empty a small-scale matrix entirely; uniform sparsity is also Zhu &
    Gupta's own setting. "global" ranks all weights together, for scores that are
    comparable across matrices (Taylor scores estimate the change in the loss, as SNIP
    and INC's ``snip_momentum`` rank them).
    """
    sizes = [s.numel() for s in scores]
    total = round(sparsity * sum(sizes))
    ranked = [_ranked(s, prev).flatten() for s, prev in zip(scores, previous, strict=True)]
    if scope == "global":
        dropped = lowest(torch.cat([r.to(ranked[0].device) for r in ranked]), total)
        counts = [int(part.sum()) for part in dropped.split(sizes)]
    elif scope == "per_matrix":
        counts = allocate(sizes, total)
    else:
        raise ValueError(f"scope must be 'per_matrix' or 'global', got {scope!r}")
    return [
        ~lowest(r, k).view_as(prev) for r, prev, k in zip(ranked, previous, counts, strict=True)
    ]


def check_two_four_shape(weight: torch.Tensor) -> None:
    if weight.ndim != 2 or weight.shape[1] % 4:
        raise ValueError(
            f"2:4 sparsity needs 2-D weights whose input dimension is a multiple of 4, "
            f"got shape {tuple(weight.shape)}"
        )


def two_four_masks(
    scores: Sequence[torch.Tensor], previous: Sequence[torch.Tensor], sparsity: float
) -> list[torch.Tensor]:
    """Gradual 2:4: zero a ``sparsity / 0.5`` share of each matrix's 2:4 candidates.

    The candidates are the two lowest scores in every group of four consecutive weights
    along the input dimension (weights already pruned rank lowest, so they stay
    candidates). Every intermediate mask is thus a subset of a valid 2:4 pattern, and at
    0.5 all candidates go: exactly two zeros per group, the two highest scores kept. This
    ramps up like the unstructured schedule instead of one late projection from an
    unstructured mask to 2:4, which would prune up to half of a group's survivors at once.
    """
    if not 0.0 <= sparsity <= 0.5:
        raise ValueError(f"2:4 sparsity is at most 0.5, got {sparsity}")
    for score in scores:
        check_two_four_shape(score)
    sizes = [s.numel() // 2 for s in scores]  # two candidates per group of four
    counts = allocate(sizes, round(sparsity * 2 * sum(sizes)))
    masks = []
    for score, prev, k in zip(scores, previous, counts, strict=True):
        mask = torch.ones_like(prev)
        if k:
            groups = _ranked(score, prev).reshape(-1, 4)
            # Sorting four values per group is cheaper than topk over the groups.
            order = groups.argsort(dim=1, stable=True)[:, :2]
            drop = lowest(groups.gather(1, order).flatten(), k).view(-1, 2)
            mask.view(-1, 4).scatter_(1, order, ~drop)
        masks.append(mask)
    return masks


def two_four_groups(weight: torch.Tensor) -> tuple[int, int]:
    """(groups with at least two zeros, all groups) along the input dimension."""
    check_two_four_shape(weight)
    zeros = (weight.detach().reshape(-1, 4) == 0).sum(dim=1)
    return int((zeros >= 2).sum()), zeros.numel()
