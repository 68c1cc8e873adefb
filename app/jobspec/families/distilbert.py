"""DistilBERT: BERT's blocks under other names and config keys.

Layers in ``<base>.transformer.layer``; attention ``attention.{q,k,v,out}_lin``; FFN
``ffn.lin1`` then ``ffn.lin2``; LayerNorms ``sa_layer_norm`` and ``output_layer_norm``;
embeddings without token types; a ``pre_classifier`` dense before the sequence head.
The config says ``n_layers``, ``dim``, ``hidden_dim`` (the FFN width) and ``n_heads``,
and derives the head size as ``dim / n_heads``, so heads go only with the hidden width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from app.jobspec.families.base import Axes, ConfigKeys, Head
from app.jobspec.families.bert import Bert


class DistilBert(Bert):
    name = "distilbert"
    model_types = ("distilbert",)
    onnx = ("distilbert",)
    task_head = ("pre_classifier", "classifier")
    keys = ConfigKeys(layers="n_layers", hidden="dim", ffn="hidden_dim", heads="n_heads")
    layers = "transformer.layer"
    query, key, value, output = (f"attention.{n}_lin" for n in ("q", "k", "v", "out"))
    ffn_up, ffn_down = "ffn.lin1", "ffn.lin2"
    layer_norms = ("sa_layer_norm", "output_layer_norm")
    model_norms = ("embeddings.LayerNorm",)
    heads = (Head("pre_classifier", "classifier"),)
    layer_axes: ClassVar[Mapping[str, Axes]] = {
        r"attention\.(q|k|v)_lin\.weight": ("q", "hidden"),
        r"attention\.(q|k|v)_lin\.bias": ("q",),
        r"attention\.out_lin\.weight": ("hidden", "q"),
        r"attention\.out_lin\.bias": ("hidden",),
        r"(sa|output)_layer_norm\.(weight|bias)": ("hidden",),
        r"ffn\.lin1\.weight": ("ffn", "hidden"),
        r"ffn\.lin1\.bias": ("ffn",),
        r"ffn\.lin2\.weight": ("hidden", "ffn"),
        r"ffn\.lin2\.bias": ("hidden",),
    }
    model_axes: ClassVar[Mapping[str, Axes]] = {
        r"{base}\.embeddings\.(word|position)_embeddings\.weight": (None, "emb"),
        r"{base}\.embeddings\.LayerNorm\.(weight|bias)": ("emb",),
        r"pre_classifier\.weight": ("cls", "hidden"),
        r"pre_classifier\.bias": ("cls",),
        r"classifier\.weight": (None, "cls"),
    }


FAMILIES = (DistilBert(),)
