"""Magnitude masks on plain weight tensors: which entries to zero for a sparsity level.

A mask is a bool tensor shaped like its weight, True where the weight is kept. Every
function takes the previous masks and ranks already-pruned weights below every live one,
so a rising sparsity only adds zeros: a pruned weight is never revived (Zhu & Gupta
2017), and a mask update never undoes work the optimizer did on the remaining weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PRUNED_SCORE = -1.0  # below any |w|, so earlier pruning decisions are kept first


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


def _scores(weight: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().float().masked_fill(~previous, PRUNED_SCORE)


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
    weights: Sequence[torch.Tensor], previous: Sequence[torch.Tensor], sparsity: float
) -> list[torch.Tensor]:
    """Zero the smallest |w| of each matrix, the same fraction in every matrix.

    Per-matrix rather than global ranking: matrices differ in scale (query/key vs. value
    and FFN projections, and in Llama-family models the projections feeding a
    residual), and one global threshold can empty a small-scale matrix entirely. Uniform
    sparsity is also Zhu & Gupta's own setting. The total is exact: round(s * N) zeros.
    """
    sizes = [w.numel() for w in weights]
    counts = allocate(sizes, round(sparsity * sum(sizes)))
    masks = []
    for weight, prev, k in zip(weights, previous, counts, strict=True):
        masks.append(~lowest(_scores(weight, prev).flatten(), k).view_as(prev))
    return masks


def check_two_four_shape(weight: torch.Tensor) -> None:
    if weight.ndim != 2 or weight.shape[1] % 4:
        raise ValueError(
            f"2:4 sparsity needs 2-D weights whose input dimension is a multiple of 4, "
            f"got shape {tuple(weight.shape)}"
        )


def two_four_masks(
    weights: Sequence[torch.Tensor], previous: Sequence[torch.Tensor], sparsity: float
) -> list[torch.Tensor]:
    """Gradual 2:4: zero a ``sparsity / 0.5`` share of each matrix's 2:4 candidates.

    The candidates are the two smallest |w| in every group of four consecutive weights
    along the input dimension (weights already pruned rank lowest, so they stay
    candidates). Every intermediate mask is thus a subset of a valid 2:4 pattern, and at
    0.5 all candidates go: exactly two zeros per group, the two largest |w| kept. This
    ramps up like the unstructured schedule instead of one late projection from an
    unstructured mask to 2:4, which would prune up to half of a group's survivors at once.
    """
    if not 0.0 <= sparsity <= 0.5:
        raise ValueError(f"2:4 sparsity is at most 0.5, got {sparsity}")
    for weight in weights:
        check_two_four_shape(weight)
    sizes = [w.numel() // 2 for w in weights]  # two candidates per group of four
    counts = allocate(sizes, round(sparsity * 2 * sum(sizes)))
    masks = []
    for weight, prev, k in zip(weights, previous, counts, strict=True):
        mask = torch.ones_like(prev)
        if k:
            groups = _scores(weight, prev).reshape(-1, 4)
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
