"""DeBERTa-v2 and v3 (``model_type`` "deberta-v2"): BERT's blocks with disentangled
attention over relative positions.

Layers in ``<base>.encoder.layer``; attention ``attention.self.{query,key,value}_proj``
and ``attention.output.dense``; FFN ``intermediate.dense`` then ``output.dense``. The
relative position embeddings (``encoder.rel_embeddings``, with their LayerNorm) sit
outside the layers and are shared by all of them: they go with no layer, and
``position_buckets`` keeps its meaning in a shallower student. When attention keys are
not shared (v2), each layer has its own ``pos_key_proj`` / ``pos_query_proj``. The
sequence head is a ``pooler.dense`` (ContextPooler) and ``classifier``.

Hidden width is not pruned yet: the relative embeddings, the pooler's
``pooler_hidden_size`` and an ``embedding_size`` projection would all follow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.jobspec.families.base import Axes, Head, Layout
from app.jobspec.families.bert import Bert, encoder_layer_axes


class DebertaV2(Bert):
    name = "deberta-v2"
    model_types = ("deberta-v2",)
    structures = ("layers", "ffn")
    onnx = ("deberta-v2",)
    query, key, value = (f"attention.self.{n}_proj" for n in ("query", "key", "value"))
    model_norms = ("embeddings.LayerNorm", "encoder.LayerNorm")
    heads = (Head("pooler.dense", "classifier"),)
    # Unshared position projections (v2) slice like the query's.
    layer_axes: ClassVar[Mapping[str, Axes]] = encoder_layer_axes(
        r"(query|key|value|pos_key|pos_query)_proj"
    )
    model_axes: ClassVar[Mapping[str, Axes]] = {}

    def layout(self, config: Mapping[str, Any], *, head_dense: bool) -> Layout:
        relative = bool(config.get("relative_attention", False))
        rows = norms = projections = 0
        if relative:
            buckets = int(config.get("position_buckets", -1))
            span = int(config.get("max_relative_positions", -1))
            if span < 1:
                span = int(config["max_position_embeddings"])
            rows = 2 * (buckets if buckets > 0 else span)
            rel_norm = str(config.get("norm_rel_ebd", "none")).lower().split("|")
            norms = int("layer_norm" in [n.strip() for n in rel_norm])
            if not config.get("share_att_key", False):
                kinds = config.get("pos_att_type") or []
                if isinstance(kinds, str):
                    kinds = [k.strip() for k in kinds.lower().split("|")]
                projections = int("c2p" in kinds) + int("p2c" in kinds)
        kernel = int(config.get("conv_kernel_size", 0) or 0)
        return Layout(
            head_dense=head_dense,
            hidden_rows=rows,
            extra_norms=norms,
            position_projections=projections,
            conv_kernel=kernel,
            conv_groups=int(config.get("conv_groups", 1) or 1),
        )


FAMILIES = (DebertaV2(),)
