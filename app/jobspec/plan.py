"""How deep and how wide the student is: the pruning plan for a ``params_ratio`` target.

Pure Python (no torch), so that anything holding a teacher's config.json (the API
included) can say what a target will produce without loading a model.

What a family's config can describe comes from its adapter (``families/``, looked up
by ``model_type``), never from a test of the type here:

- **Heads follow the hidden width** (BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT,
  DeBERTa-v2, ModernBERT). The config derives the head size as ``hidden_size /
  num_attention_heads``, so the attention width *is* the hidden width. Hidden pruning
  therefore keeps the head size and drops whole heads with the channels: a student of
  hidden width H' has H' / head_dim heads (kernels like a head size of 32 or 64, and a
  narrower head would change every attention score). Heads alone cannot go at a fixed
  width ("heads" is refused; "hidden" removes them).
- **Explicit heads** (Llama, Mistral, Qwen2). The config carries ``head_dim``,
  ``num_attention_heads`` and ``num_key_value_heads``: hidden width and heads are
  independent. Query heads go uniformly per key-value group (every KV head keeps the
  same number of query heads); when each KV head serves one query head (no grouping),
  heads go with their KV heads.

A family lists the structures it can lose (``Family.structures``); the rest are refused.
Its ``Layout`` (biases, norms, a gated FFN, what sits outside the layers) gives the
parameter counts.

Every layer of a student has the same shape (the config holds one of each size); which
channels, heads and neurons each layer keeps is the importance score's business.

The plan rule (``plan_student``), on non-embedding parameters (CoFi, Minitron):

- ``layers`` only: the fewest evenly spaced layers, at full width, whose non-embedding
  parameters reach the target (the rule the engine always had).
- with width axes (``ffn``, ``hidden``, ``heads``): width before depth. Minitron found
  that at equal size a narrower model keeps more accuracy than a shallower one (depth
  gives more speed-up per parameter, which is why a target far below what the floors
  allow still drops layers). For k = L, L-1, ..., 1: shrink every allowed width axis by
  one shared fraction f (each rounded up to its grid and held at its floor), take the
  f whose student reaches the target with k layers with the fewest parameters, then
  tighten the finest axis (FFN, else hidden, else heads) to the smallest grid size
  that reaches it. The first k whose finest axis stays at or above its floor wins; its
  parameters exceed the target by less than one grid step of that axis per layer (for
  FFN pruning, k · 8 · (2H + 1): 0.7% of the target for MiniLM-L6 at 0.5). When no k
  gets there (targets far below what one layer holds), the smallest plan that still
  reaches the target is taken, every axis at its floor, ties going to more layers.

Grids: FFN widths and explicit-head hidden widths are multiples of 8; other hidden
widths are multiples of the head size (of lcm(head size, 8) where that leaves room);
heads move in whole query heads per KV group. A teacher's own size is always allowed. Floors, as a
fraction of the teacher's size: FFN 1/4, hidden 1/2, heads 1/2 (of the original
teacher's when a strategy prunes a student again: ``TeacherSizes.floors_of``).
``LlamaConfig`` validates that the heads divide the hidden width (``head_dim``
notwithstanding), so a Llama plan rounds its hidden width up (or keeps more heads)
until they do: 64 wide with 8 heads can keep 4 heads but not 6 or 7.

A student's non-embedding count is exactly ``PrunePlan.non_embedding``
(``prune_layers.sizes_from_model`` checks the formulas against the teacher's own count
before any plan is trusted).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.jobspec import families, rules, vocabulary
from app.jobspec.errors import EngineInputError
from app.jobspec.families import Layout

# Kernel-friendly widths; a width that is not a multiple of 8 appears only when it is
# the teacher's own.
WIDTH_MULTIPLE = 8
# The narrowest each axis may get, as a fraction of the teacher's size.
MIN_FFN_FRACTION = 0.25
MIN_HIDDEN_FRACTION = 0.5
MIN_HEADS_FRACTION = 0.5

# Which axis absorbs the last bit of the target: the finest grid first.
_FINEST_FIRST = vocabulary.WIDTHS


@dataclass(frozen=True)
class Shape:
    """One student's sizes (every layer alike)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int


# BERT's: biases everywhere, two LayerNorms per layer, a head dense (the default).
BERT_LAYOUT = Layout()


@dataclass(frozen=True)
class TeacherSizes:
    """What the parameter count of a ``*ForSequenceClassification`` (or token
    classification) model depends on: its sizes, and its family's ``Layout`` (biases,
    norms, a gated FFN, what sits outside the layers; ``families/``)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int = 0  # 0: unknown (the config did not say; hidden/heads then unplannable)
    num_kv_heads: int = 0
    head_dim: int = 0
    num_labels: int = 2
    family: str = "bert"
    layout: Layout = BERT_LAYOUT
    # When this model is itself a student pruned further (a strategy's later round),
    # the original teacher's shape: floors are fractions of it, so rounds together
    # never go below what one plan against the teacher may (and what the API checks a
    # target against). None: floors are fractions of this model.
    floors_of: Shape | None = None

    @property
    def floor_base(self) -> Shape:
        return self.floors_of or self.teacher_shape

    @property
    def explicit_heads(self) -> bool:
        """Heads and hidden width independent (else heads = hidden / head size)."""
        return self.layout.explicit_heads

    @property
    def head_dense(self) -> bool:
        return self.layout.head_dense

    @property
    def kv_group(self) -> int:
        """Query heads per KV head."""
        return self.num_heads // self.num_kv_heads if self.num_kv_heads else 1

    @property
    def teacher_shape(self) -> Shape:
        return Shape(
            self.num_layers,
            self.hidden_size,
            self.intermediate_size,
            self.num_heads,
            self.num_kv_heads,
        )

    @property
    def per_neuron(self) -> int:
        """Parameters per FFN neuron at the teacher's hidden width."""
        return self._per_neuron(self.hidden_size)

    @property
    def layer_other(self) -> int:
        """Per layer, the parameters FFN pruning does not remove (teacher's width)."""
        return self._layer(self.teacher_shape) - self.per_neuron * self.intermediate_size

    @property
    def fixed(self) -> int:
        """Non-embedding parameters outside the layers (pooler, classifier, ...)."""
        return self._fixed(self.hidden_size)

    def non_embedding(
        self,
        num_layers: int,
        intermediate_size: int,
        hidden_size: int | None = None,
        num_heads: int | None = None,
        num_kv_heads: int | None = None,
    ) -> int:
        """Non-embedding parameters of a student with these dimensions (the teacher's
        for any left out; where heads follow the hidden width, they do)."""
        hidden = self.hidden_size if hidden_size is None else hidden_size
        if self.explicit_heads:
            heads = self.num_heads if num_heads is None else num_heads
            kv = self.num_kv_heads if num_kv_heads is None else num_kv_heads
        else:
            heads = kv = hidden // self.head_dim if self.head_dim else 0
        return self.shape_params(Shape(num_layers, hidden, intermediate_size, heads, kv))

    def shape_params(self, shape: Shape) -> int:
        return self._fixed(shape.hidden_size) + shape.num_layers * self._layer(shape)

    def layer_params(self, shape: Shape) -> list[int]:
        """Each layer's parameters in a model of ``shape`` (layer 0 may differ)."""
        every = self._layer(shape)
        first = every - self._first_layer_saving(shape.hidden_size)
        return [first] + [every] * (shape.num_layers - 1)

    @property
    def teacher_non_embedding(self) -> int:
        return self.shape_params(self.teacher_shape)

    def _per_neuron(self, hidden: int) -> int:
        # Rows of the up (and gate) projection with their biases, a column of down.
        inputs = self.ffn_inputs
        return (inputs + 1) * hidden + (inputs if self.layout.mlp_bias else 0)

    def attention_widths(self, shape: Shape) -> tuple[int, int]:
        """The query and the key/value projections' widths in a model of ``shape``."""
        if self.explicit_heads:
            return shape.num_heads * self.head_dim, shape.num_kv_heads * self.head_dim
        return shape.hidden_size, shape.hidden_size  # the attention width is the hidden width

    @property
    def ffn_inputs(self) -> int:
        """Projections whose rows are neurons: gate and up, or up alone."""
        return 2 if self.layout.gated else 1

    def _layer(self, shape: Shape) -> int:
        hidden, layout = shape.hidden_size, self.layout
        q, kv = self.attention_widths(shape)
        attn = 2 * hidden * q + 2 * hidden * kv
        if layout.qkv_bias:
            attn += q + 2 * kv
        if layout.o_bias:
            attn += hidden
        attn += layout.position_projections * (hidden * q + q)
        mlp = self._per_neuron(hidden) * shape.intermediate_size
        if layout.mlp_bias:
            mlp += hidden
        return attn + mlp + layout.layer_norms * layout.norm_params * hidden

    def _first_layer_saving(self, hidden: int) -> int:
        first = self.layout.first_layer_norms
        if first is None:
            return 0
        return (self.layout.layer_norms - first) * self.layout.norm_params * hidden

    def _fixed(self, hidden: int) -> int:
        layout, labels = self.layout, self.num_labels
        fixed = hidden * labels + (labels if layout.classifier_bias else 0)
        if layout.head_dense:
            # BERT's pooler, RoBERTa's classification dense, ModernBERT's head (+ norm).
            fixed += hidden * hidden + (hidden if layout.head_dense_bias else 0)
            fixed += layout.norm_params * hidden if layout.head_norm else 0
        if layout.embedding_size is not None:
            fixed += layout.embedding_size * hidden + hidden  # ELECTRA's embeddings_project
        fixed += (layout.hidden_rows + layout.extra_norms * layout.norm_params) * hidden
        if layout.conv_kernel:
            # DeBERTa-v2's convolution, its bias and its LayerNorm.
            fixed += hidden * (hidden // layout.conv_groups) * layout.conv_kernel + 3 * hidden
        return fixed - self._first_layer_saving(hidden)


@dataclass(frozen=True)
class PrunePlan:
    num_layers: int
    intermediate_size: int
    # layer_map[i] is the teacher layer that student layer i is copied from.
    layer_map: tuple[int, ...]
    non_embedding: int
    params_ratio: float  # achieved: non_embedding / the teacher's
    target_ratio: float
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    def as_dict(self) -> dict[str, Any]:
        """The student's sizes, for logs and reports."""
        return {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
        }


def evenly_spaced_layers(num_layers: int, keep: int) -> list[int]:
    """Teacher layer kept for each student layer: ``(i + 1) * L // k - 1``.

    This is TinyBERT's uniform map (student layer i learns from teacher layer
    (i+1)·L/k). It always keeps the last layer, whose output the classifier head was
    trained on; 3 of 6 gives [1, 3, 5], 2 of 6 gives [2, 5], 1 gives [L - 1].
    """
    if not 1 <= keep <= num_layers:
        raise ValueError(f"cannot keep {keep} of {num_layers} layers")
    return [(i + 1) * num_layers // keep - 1 for i in range(keep)]


def first_and_last_layers(num_layers: int, keep: int) -> list[int]:
    """The first and the last layer, the rest evenly spaced between: 3 of 6 gives
    [0, 2, 5], 2 of 6 gives [0, 5], 1 gives [L - 1].

    Token-level tasks lean on what the lowest layer computes (lexical features): on
    CoNLL-2003 a 3-of-6 MiniLM student kept 98% of the teacher's entity F1 with
    [0, 2, 5] and 87% with [1, 3, 5]; sentence classification went the other way
    (bench/results/layer-choice-2026-11-28.json).
    """
    if not 1 <= keep <= num_layers:
        raise ValueError(f"cannot keep {keep} of {num_layers} layers")
    if keep == 1:
        return [num_layers - 1]
    return [i * (num_layers - 1) // (keep - 1) for i in range(keep)]


# Which teacher layers a shallower student keeps, by the task's rule (tasks.py).
LAYER_RULES = {"top": evenly_spaced_layers, "first_last": first_and_last_layers}


def sizes_from_config(
    config: Mapping[str, Any] | Any, num_labels: int = 2, *, head_dense: bool = True
) -> TeacherSizes:
    """The sizes of a ``*ForSequenceClassification`` model built from ``config``
    (a config.json dict or a transformers config) with ``num_labels`` outputs
    (``head_dense=False``: a head without a hidden dense, as BERT's for token
    classification; the family says where its heads differ)."""
    if not isinstance(config, Mapping):
        config = config.to_dict()
    family = families.for_config(config)
    keys = family.keys
    heads = int(config.get(keys.heads) or 0)
    layout = family.layout(config, head_dense=head_dense)
    return TeacherSizes(
        num_layers=int(config[keys.layers]),
        hidden_size=int(config[keys.hidden]),
        intermediate_size=int(config[keys.ffn]),
        num_labels=num_labels,
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads)
        if layout.explicit_heads
        else heads,
        head_dim=family.head_dim(config),
        family=family.name,
        layout=layout,
    )


def teacher_sizes(config: Mapping[str, Any], *, task: str, num_labels: int) -> TeacherSizes:
    """``sizes_from_config`` for a ``task``'s head (``vocabulary.DENSE_HEAD_TASKS``)."""
    return sizes_from_config(
        config, num_labels=num_labels, head_dense=task in vocabulary.DENSE_HEAD_TASKS
    )


def layers_for(sizes: TeacherSizes, rule: str, keep: int) -> list[int]:
    """The teacher layers a ``keep``-layer student is copied from, by a task's rule
    (``LAYER_RULES``), within what the family allows: one that must keep its first
    layer keeps it."""
    chosen = LAYER_RULES[rule](sizes.num_layers, keep)
    if families.get(sizes.family).keeps_first_layer and chosen[0] != 0:
        chosen = first_and_last_layers(sizes.num_layers, keep) if keep > 1 else [0]
    return chosen


def ffn_floor(intermediate_size: int) -> int:
    """The narrowest FFN a plan may leave: a quarter of the teacher's, rounded up to a
    multiple of 8, and never more than the teacher's own width."""
    floor = _round_up(math.ceil(intermediate_size * MIN_FFN_FRACTION))
    return max(1, min(floor, intermediate_size))


def check_structured(sizes: TeacherSizes, structured: Collection[str]) -> None:
    """Refuse, with what to ask for instead, what this release does not remove, what
    this teacher's family cannot lose and what its config cannot describe."""
    rules.check_structures(structured)
    rules.check_family(families.get(sizes.family), structured)
    if "hidden" in structured and sizes.head_dim <= 0:
        raise EngineInputError(
            "pruning_not_possible",
            "hidden-width pruning needs num_attention_heads (dividing hidden_size) in the "
            "teacher's config; use 'ffn' or 'layers'",
            param="pruning.structured",
        )


# When the finest axis is hidden width or heads (grids of whole heads, coarse in small
# models), a plan may exceed its target by this fraction of it and still be taken at the
# widest depth that reaches it; past that, the plan of any depth that lands closest wins.
# FFN grids (multiples of 8) are fine enough that width always goes first.
CLOSE_ENOUGH = 0.03


def plan_student(
    sizes: TeacherSizes,
    params_ratio: float,
    *,
    ffn: bool = False,
    hidden: bool = False,
    heads: bool = False,
) -> PrunePlan:
    """The student's depth and widths for ``params_ratio`` (see the module docstring)."""
    if not 0.0 < params_ratio <= 1.0:
        raise ValueError(f"params_ratio must be in (0, 1], not {params_ratio}")
    axes = _axes(sizes, ffn=ffn, hidden=hidden, heads=heads)
    # Less a hair of float noise, so a ratio computed from a plan's own count (the
    # API's smallest_ratio) plans that same student.
    target = params_ratio * sizes.teacher_non_embedding * (1 - 1e-12)
    full = sizes.teacher_shape
    if not axes:
        for k in range(1, sizes.num_layers + 1):
            if sizes.shape_params(replace(full, num_layers=k)) >= target:
                return _plan(sizes, replace(full, num_layers=k), params_ratio)
        return _plan(sizes, full, params_ratio)

    finest = next(axis for axis in _FINEST_FIRST if axis in axes)
    # Llama-like configs insist that heads divide the hidden width, so a level may have
    # to round the hidden width up, and fewer parameters no longer follow from a lower
    # level: scan every level there. Elsewhere the first level that misses ends it.
    monotone = not (sizes.explicit_heads and ("hidden" in axes or "heads" in axes))
    fallback: list[tuple[int, int, Shape]] = []  # (params, -k, shape)
    for k in range(sizes.num_layers, 0, -1):
        top = replace(full, num_layers=k)
        if sizes.shape_params(top) < target:
            continue  # k layers cannot reach the target even at full width
        floors = _fit(sizes, _at_level(top, axes, None), axes)
        if _wants_below_floor(sizes, floors, axes[finest], target):
            # Even at the floors k layers hold too much: no level of k can be accepted.
            fallback.append((sizes.shape_params(floors), -k, floors))
            continue
        chosen, chosen_params = top, sizes.shape_params(top)
        for fraction in _levels(axes):
            shape = _fit(sizes, _at_level(top, axes, fraction), axes)
            params = sizes.shape_params(shape)
            if params < target:
                if monotone:
                    break
                continue
            if params < chosen_params:  # ties keep the wider level
                chosen, chosen_params = shape, params
        tightened = _tighten(sizes, chosen, axes[finest], target)
        if not _wants_below_floor(sizes, tightened, axes[finest], target):
            params = sizes.shape_params(tightened)
            if finest == "ffn" or params <= target * (1 + CLOSE_ENOUGH):
                return _plan(sizes, tightened, params_ratio)
            # A coarse grid (hidden widths and heads move in whole heads) overshot at
            # this depth: remember it, and see whether fewer layers land closer.
            fallback.append((params, -k, tightened))
            continue
        fallback.append((sizes.shape_params(floors), -k, floors))
    _, _, shape = min(fallback, key=lambda item: (item[0], item[1]))
    return _plan(sizes, shape, params_ratio)


def plan_for_shape(sizes: TeacherSizes, shape: Shape, target_ratio: float) -> PrunePlan:
    """The plan of a student whose shape was chosen elsewhere (a ``speedup`` target:
    speed_plan.py), its layers evenly spaced as any plan's."""
    return _plan(sizes, shape, target_ratio)


def shapes_allowed(sizes: TeacherSizes, structured: Collection[str]) -> list[Shape]:
    """Every student shape a plan for ``structured`` may produce: each depth, and each
    allowed width on its grid between its floor and the teacher's size (the shapes the
    config accepts), the teacher's own shape included."""
    axes = _axes(
        sizes,
        ffn="ffn" in structured,
        hidden="hidden" in structured,
        heads="heads" in structured,
    )
    choices = [[v for v in axis.grid if v >= axis.floor] for axis in axes.values()]
    shapes: set[Shape] = set()
    for k in range(1, sizes.num_layers + 1):
        for values in itertools.product(*choices):
            shape = replace(sizes.teacher_shape, num_layers=k)
            for axis, value in zip(axes.values(), values, strict=True):
                shape = axis.with_size(shape, value)
            if _valid(sizes, shape):
                shapes.add(shape)
    return sorted(shapes, key=lambda s: (sizes.shape_params(s), s.num_layers))


def with_ffn_width(sizes: TeacherSizes, plan: PrunePlan, width: int) -> PrunePlan:
    """``plan`` with every layer's FFN at ``width`` (its counts recomputed): the student a
    gradual strategy starts from before it narrows the FFN to the plan's width."""
    shape = Shape(
        num_layers=plan.num_layers,
        hidden_size=plan.hidden_size,
        intermediate_size=width,
        num_heads=plan.num_attention_heads,
        num_kv_heads=plan.num_key_value_heads,
    )
    return replace(_plan(sizes, shape, plan.target_ratio), layer_map=plan.layer_map)


def plan_structured(
    sizes: TeacherSizes, params_ratio: float, structured: Collection[str]
) -> PrunePlan:
    """``plan_student`` for a ``pruning.structured`` list, refused where the teacher's
    config cannot describe the result."""
    check_structured(sizes, structured)
    return plan_student(
        sizes,
        params_ratio,
        ffn="ffn" in structured,
        hidden="hidden" in structured,
        heads="heads" in structured,
    )


def smallest_ratio(sizes: TeacherSizes, structured: Collection[str]) -> float:
    """The least ``params_ratio`` a plan can reach: one layer, every allowed width at
    its floor (what the API checks a target against)."""
    axes = _axes(
        sizes,
        ffn="ffn" in structured,
        hidden="hidden" in structured,
        heads="heads" in structured,
    )
    one = replace(sizes.teacher_shape, num_layers=1)
    floors = _fit(sizes, _at_level(one, axes, None), axes)
    return sizes.shape_params(floors) / sizes.teacher_non_embedding


def check_ratio_reachable(sizes: TeacherSizes, structured: Collection[str], ratio: float) -> None:
    """Refuse a params_ratio below the smallest student these structures make of this
    teacher, saying what that is."""
    smallest = smallest_ratio(sizes, structured)
    if ratio >= smallest - 1e-9:
        return
    widths = [s for s in vocabulary.WIDTHS if s in structured]
    how = (
        f"one layer with its {', '.join(widths)} width at the floor"
        if widths
        else 'one whole layer; add "ffn" (or "hidden") to pruning.structured to go smaller'
    )
    raise EngineInputError(
        "target_unreachable",
        f"The smallest student this engine makes from this teacher keeps {how}: about "
        f"{smallest:.3f} of its non-embedding parameters; ask for "
        f"target.params_ratio >= {smallest:.3f}.",
        param="target.params_ratio",
    )


# -- width axes ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axis:
    """One width dimension: its sizes on the grid (ascending, the teacher's last), its
    floor, and how a size is read from and written into a shape."""

    grid: tuple[int, ...]
    floor: int
    full: int
    size: Callable[[Shape], int]
    with_size: Callable[[Shape, int], Shape]

    def at(self, fraction: float | None) -> int:
        """The smallest grid size at or above ``fraction`` of the teacher's, held at the
        floor (``None``: the floor)."""
        if fraction is None:
            return self.floor
        index = bisect.bisect_left(self.grid, fraction * self.full - 1e-9)
        return max(self.grid[min(index, len(self.grid) - 1)], self.floor)


def _axes(sizes: TeacherSizes, *, ffn: bool, hidden: bool, heads: bool) -> dict[str, _Axis]:
    axes: dict[str, _Axis] = {}
    if ffn:
        full = sizes.intermediate_size
        axes["ffn"] = _Axis(
            grid=_grid(full, WIDTH_MULTIPLE),
            floor=min(ffn_floor(sizes.floor_base.intermediate_size), full),
            full=full,
            size=lambda s: s.intermediate_size,
            with_size=lambda s, v: replace(s, intermediate_size=v),
        )
    if hidden:
        axes["hidden"] = _hidden_axis(sizes)
    if heads:
        axes["heads"] = _heads_axis(sizes)
    return axes


def _grid(full: int, step: int) -> tuple[int, ...]:
    return (*range(step, full, step), full)


def _hidden_axis(sizes: TeacherSizes) -> _Axis:
    full = sizes.hidden_size
    if sizes.explicit_heads:
        step = WIDTH_MULTIPLE
    else:
        if sizes.head_dim <= 0:
            raise ValueError("hidden pruning needs the head size")
        # Whole heads; whole multiples of 8 too where that still leaves a choice.
        step = math.lcm(sizes.head_dim, WIDTH_MULTIPLE)
        if step > full // 2:
            step = sizes.head_dim
    grid = _grid(full, step)
    if sizes.layout.embedding_size is not None:
        # At H' = E an ELECTRA config has no projection, which the teacher's needs.
        grid = tuple(v for v in grid if v != sizes.layout.embedding_size)
    base = sizes.floor_base.hidden_size
    floor = next((v for v in grid if v >= MIN_HIDDEN_FRACTION * base), grid[-1])

    def with_size(shape: Shape, value: int) -> Shape:
        if sizes.explicit_heads:
            return replace(shape, hidden_size=value)
        heads = value // sizes.head_dim
        return replace(shape, hidden_size=value, num_heads=heads, num_kv_heads=heads)

    return _Axis(grid, floor, full, lambda s: s.hidden_size, with_size)


def _heads_axis(sizes: TeacherSizes) -> _Axis:
    """Query heads per KV group when heads are grouped (the KV heads stay); whole
    heads with their KV heads when every KV head serves one query head."""
    if not sizes.explicit_heads:
        raise ValueError("heads are planned only where the config sets the head size")
    group, kv = sizes.kv_group, sizes.num_kv_heads
    if group > 1:
        units, full = kv, group  # the axis counts query heads per group
    else:
        units, full = 1, sizes.num_heads  # the axis counts heads (= KV heads)
    grid = _grid(full, 1)
    base = sizes.floor_base
    base_full = base.num_heads // base.num_kv_heads if group > 1 else base.num_heads
    floor = min(full, max(1, math.ceil(MIN_HEADS_FRACTION * base_full)))

    def with_size(shape: Shape, value: int) -> Shape:
        if group > 1:
            return replace(shape, num_heads=units * value)
        return replace(shape, num_heads=value, num_kv_heads=value)

    return _Axis(grid, floor, full, lambda s: s.num_heads // units, with_size)


def _levels(axes: Mapping[str, _Axis]) -> list[float]:
    """Every fraction at which some axis changes size, descending."""
    # Below its floor an axis no longer moves, so its lower grid adds no level.
    fractions = {v / a.full for a in axes.values() for v in a.grid if v >= a.floor}
    return sorted(fractions, reverse=True)


def _at_level(shape: Shape, axes: Mapping[str, _Axis], fraction: float | None) -> Shape:
    for axis in axes.values():
        shape = axis.with_size(shape, axis.at(fraction))
    return shape


def _tighten(sizes: TeacherSizes, shape: Shape, axis: _Axis, target: float) -> Shape:
    """The smallest size of ``axis`` on its grid (floor or not) that still reaches the
    target, the rest of ``shape`` fixed."""
    values = [
        v for v in axis.grid if v <= axis.size(shape) and _valid(sizes, axis.with_size(shape, v))
    ]
    # Parameters grow with the axis, so the answer is a bisection over the grid.
    low, high = 0, len(values) - 1
    while low < high:
        middle = (low + high) // 2
        if sizes.shape_params(axis.with_size(shape, values[middle])) >= target:
            high = middle
        else:
            low = middle + 1
    return axis.with_size(shape, values[high])


def _wants_below_floor(sizes: TeacherSizes, shape: Shape, axis: _Axis, target: float) -> bool:
    """Whether ``shape`` (tightened on ``axis``) would still reach the target one grid
    step narrower than the floor allows: then these layers hold too much, even at the
    floors. (Tightening stops at the grid's smallest size, which may be the floor, so
    that it lands on the floor says nothing by itself.)"""
    size = axis.size(shape)
    if size > axis.floor:
        return False
    step = axis.grid[1] - axis.grid[0] if len(axis.grid) > 1 else size
    return sizes.shape_params(axis.with_size(shape, max(0, size - step))) >= target


def _valid(sizes: TeacherSizes, shape: Shape) -> bool:
    """What the config accepts beyond the grids: a config with explicit heads (Llama's)
    validates that they divide the hidden width, ``head_dim`` notwithstanding."""
    return not sizes.explicit_heads or shape.hidden_size % shape.num_heads == 0


def _fit(sizes: TeacherSizes, shape: Shape, axes: Mapping[str, _Axis]) -> Shape:
    """``shape``, or the nearest valid one above it: a wider hidden width, else more
    heads, else the teacher's sizes on those axes."""
    for name in vocabulary.HEAD_WIDTHS:
        if _valid(sizes, shape) or name not in axes:
            continue
        axis = axes[name]
        for value in axis.grid:
            if value > axis.size(shape) and _valid(sizes, axis.with_size(shape, value)):
                shape = axis.with_size(shape, value)
                break
    if _valid(sizes, shape):
        return shape
    full = sizes.teacher_shape
    return replace(
        shape,
        hidden_size=full.hidden_size,
        num_heads=full.num_heads,
        num_kv_heads=full.num_kv_heads,
    )


def _round_up(value: int) -> int:
    return -(-value // WIDTH_MULTIPLE) * WIDTH_MULTIPLE


def _plan(sizes: TeacherSizes, shape: Shape, target_ratio: float) -> PrunePlan:
    params = sizes.shape_params(shape)
    return PrunePlan(
        num_layers=shape.num_layers,
        intermediate_size=shape.intermediate_size,
        layer_map=tuple(layers_for(sizes, "top", shape.num_layers)),
        non_embedding=params,
        params_ratio=params / sizes.teacher_non_embedding,
        target_ratio=target_ratio,
        hidden_size=shape.hidden_size,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        head_dim=sizes.head_dim,
    )
