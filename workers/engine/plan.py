"""How deep and how wide the student is: the pruning plan for a ``params_ratio`` target.

Pure Python (no torch), so that anything holding a teacher's config.json (the API
included) can say what a target will produce without loading a model.

Sizes of a BERT-family encoder with hidden width H, FFN width I and L layers:

- every layer holds ``other`` parameters that FFN pruning does not touch (attention,
  both LayerNorms, the FFN output bias: 4H² + 9H) plus ``2H + 1`` per FFN neuron (its
  row of the intermediate dense weight, its bias, its column of the output dense weight);
- ``fixed`` is the non-embedding rest that every student keeps (pooler and classifier,
  ELECTRA's embedding projection).

The plan rule (``plan_student``):

- ``layers`` only: the fewest evenly spaced layers, at full FFN width, whose
  non-embedding parameters reach the target (the rule the engine always had).
- ``layers`` and ``ffn``: width before depth (CoFi, Minitron: at moderate ratios a model
  loses less from narrower FFNs than from fewer layers). For k = L, L-1, ..., 1, take the
  smallest width m (a multiple of 8, or the teacher's full width) that reaches the
  target with k layers; the first k whose m is at least the floor, a quarter of the
  teacher's width rounded up to a multiple of 8, wins. Its parameters are at or above
  the target by less than one 8-neuron step per layer (k · 8 · (2H + 1) parameters;
  0.7% of the target for MiniLM-L6 at 0.5): that step is the tolerance. When no k gets
  there with m at or above the floor (targets far below what one layer holds), the
  smallest plan that still reaches the target is taken, ties going to more layers.

The same m serves every layer (a BERT config has one ``intermediate_size``); each layer
keeps its own top-m neurons by importance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Kernel-friendly widths; a width that is not a multiple of 8 appears only when it is
# the teacher's own.
WIDTH_MULTIPLE = 8
# The narrowest FFN a plan may leave, as a fraction of the teacher's width.
MIN_FFN_FRACTION = 0.25


@dataclass(frozen=True)
class TeacherSizes:
    num_layers: int
    hidden_size: int
    intermediate_size: int
    # Per layer, the parameters FFN pruning does not remove.
    layer_other: int
    # Non-embedding parameters outside the encoder layers (pooler, classifier...).
    fixed: int

    @property
    def per_neuron(self) -> int:
        return 2 * self.hidden_size + 1

    def non_embedding(self, num_layers: int, intermediate_size: int) -> int:
        """Non-embedding parameters of a student with these dimensions."""
        per_layer = self.layer_other + self.per_neuron * intermediate_size
        return self.fixed + num_layers * per_layer

    @property
    def teacher_non_embedding(self) -> int:
        return self.non_embedding(self.num_layers, self.intermediate_size)


@dataclass(frozen=True)
class PrunePlan:
    num_layers: int
    intermediate_size: int
    # layer_map[i] is the teacher layer that student layer i is copied from.
    layer_map: tuple[int, ...]
    non_embedding: int
    params_ratio: float  # achieved: non_embedding / the teacher's
    target_ratio: float


def evenly_spaced_layers(num_layers: int, keep: int) -> list[int]:
    """Teacher layer kept for each student layer: ``(i + 1) * L // k - 1``.

    This is TinyBERT's uniform map (student layer i learns from teacher layer
    (i+1)·L/k). It always keeps the last layer, whose output the classifier head was
    trained on; 3 of 6 gives [1, 3, 5], 2 of 6 gives [2, 5], 1 gives [L - 1].
    """
    if not 1 <= keep <= num_layers:
        raise ValueError(f"cannot keep {keep} of {num_layers} layers")
    return [(i + 1) * num_layers // keep - 1 for i in range(keep)]


def sizes_from_config(config: Mapping[str, Any] | Any, num_labels: int = 2) -> TeacherSizes:
    """The sizes of a ``*ForSequenceClassification`` model built from ``config``
    (a config.json dict or a transformers config) with ``num_labels`` outputs."""
    if not isinstance(config, Mapping):
        config = config.to_dict()
    hidden = int(config["hidden_size"])
    width = int(config["intermediate_size"])
    # BERT: pooler (H² + H) + classifier (H·C + C); RoBERTa / ELECTRA: a classification
    # head with a dense (H² + H) and an out_proj (H·C + C) and no pooler. Same count.
    fixed = hidden * hidden + hidden + hidden * num_labels + num_labels
    embedding_size = config.get("embedding_size")
    if config.get("model_type") == "electra" and embedding_size not in (None, hidden):
        fixed += int(embedding_size) * hidden + hidden  # embeddings_project
    return TeacherSizes(
        num_layers=int(config["num_hidden_layers"]),
        hidden_size=hidden,
        intermediate_size=width,
        layer_other=4 * hidden * hidden + 9 * hidden,
        fixed=fixed,
    )


def ffn_floor(intermediate_size: int) -> int:
    """The narrowest FFN a plan may leave: a quarter of the teacher's, rounded up to a
    multiple of 8, and never more than the teacher's own width."""
    floor = _round_up(math.ceil(intermediate_size * MIN_FFN_FRACTION))
    return max(1, min(floor, intermediate_size))


def plan_student(sizes: TeacherSizes, params_ratio: float, *, ffn: bool) -> PrunePlan:
    """The student's depth and FFN width for ``params_ratio`` (see the module docstring)."""
    if not 0.0 < params_ratio <= 1.0:
        raise ValueError(f"params_ratio must be in (0, 1], not {params_ratio}")
    target = params_ratio * sizes.teacher_non_embedding
    full = sizes.intermediate_size
    if not ffn:
        for k in range(1, sizes.num_layers + 1):
            if sizes.non_embedding(k, full) >= target:
                return _plan(sizes, k, full, params_ratio)
        return _plan(sizes, sizes.num_layers, full, params_ratio)

    floor = ffn_floor(full)
    fallback: list[tuple[int, int, int]] = []  # (params, -k, m)
    for k in range(sizes.num_layers, 0, -1):
        exact = _min_width(sizes, k, target)
        if exact > full:
            continue  # k layers cannot reach the target even at full width
        width = min(_round_up(max(exact, 1)), full)
        if width >= floor:
            return _plan(sizes, k, width, params_ratio)
        fallback.append((sizes.non_embedding(k, floor), -k, floor))
    _, neg_k, width = min(fallback)
    return _plan(sizes, -neg_k, width, params_ratio)


def _min_width(sizes: TeacherSizes, k: int, target: float) -> int:
    """The smallest integer FFN width with which k layers reach ``target`` (may be <= 0)."""
    per_layer_needed = (target - sizes.fixed) / k - sizes.layer_other
    return math.ceil(per_layer_needed / sizes.per_neuron)


def _round_up(value: int) -> int:
    return -(-value // WIDTH_MULTIPLE) * WIDTH_MULTIPLE


def _plan(sizes: TeacherSizes, k: int, width: int, target_ratio: float) -> PrunePlan:
    params = sizes.non_embedding(k, width)
    return PrunePlan(
        num_layers=k,
        intermediate_size=width,
        layer_map=tuple(evenly_spaced_layers(sizes.num_layers, k)),
        non_embedding=params,
        params_ratio=params / sizes.teacher_non_embedding,
        target_ratio=target_ratio,
    )
