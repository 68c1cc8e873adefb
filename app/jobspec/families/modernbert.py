"""ModernBERT: pre-norm blocks with rotary positions, global and local attention
alternating by layer, and a gated FFN.

Layers in ``<base>.layers``, each ``attn_norm`` (an Identity in layer 0, whose input
the embeddings' norm already normalised), ``attn.Wqkv`` (query, key and value stacked)
and ``attn.Wo``, ``mlp_norm``, ``mlp.Wi`` ([input; gate] stacked: neuron j is rows j and
F + j) and ``mlp.Wo``; a ``final_norm``; the head is ``head.dense`` and ``head.norm``
then ``classifier``, for sequences and tokens alike. Which layers attend globally is the
config's ``layer_types``, kept per kept layer. Since layer 0 has no attention norm, a
student always keeps it as its first layer. Norms and projections may lack biases
(``norm_bias``, ``attention_bias``, ``mlp_bias``, ``classifier_bias``).

Hidden width and heads are not pruned yet (the fused Wqkv would need its three parts
sliced alike, and no rule tags them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.jobspec.families.base import Axes, Family, Head, Layout


class ModernBert(Family):
    name = "modernbert"
    model_types = ("modernbert",)
    structures = ("layers", "ffn")
    onnx = ("modernbert",)
    layers = "layers"
    query = key = value = "attn.Wqkv"
    output = "attn.Wo"
    ffn_up, ffn_down = "mlp.Wi", "mlp.Wo"
    ffn_fused_gate = True
    layer_norms = ("attn_norm", "mlp_norm")
    model_norms = ("final_norm",)
    heads = (Head("head.dense", "classifier"),)
    keeps_first_layer = True
    task_head = ("head", "classifier")
    layer_axes: ClassVar[Mapping[str, Axes]] = {
        r"mlp\.Wi\.weight": ("ffn_halves", None),
        r"mlp\.Wi\.bias": ("ffn_halves",),
        r"mlp\.Wo\.weight": (None, "ffn"),
    }

    def layout(self, config: Mapping[str, Any], *, head_dense: bool) -> Layout:
        attention_bias = bool(config.get("attention_bias", False))
        return Layout(
            qkv_bias=attention_bias,
            o_bias=attention_bias,
            gated=True,
            mlp_bias=bool(config.get("mlp_bias", False)),
            norm_bias=bool(config.get("norm_bias", False)),
            first_layer_norms=1,
            extra_norms=1,
            head_dense=True,  # the token head has it too
            head_dense_bias=bool(config.get("classifier_bias", False)),
            head_norm=True,
        )


FAMILIES = (ModernBert(),)
