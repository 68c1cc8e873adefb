"""BERT-like encoders: BERT (MiniLM is BERT), ELECTRA, RoBERTa and XLM-R.

Layers in ``<base>.encoder.layer``; attention ``attention.self.{query,key,value}`` and
``attention.output.dense``; FFN ``intermediate.dense`` then ``output.dense``; a
LayerNorm after each. The config derives the head size as ``hidden_size /
num_attention_heads``, so heads go only with the hidden width (whole heads, their size
kept). ELECTRA may project its embeddings (width ``embedding_size``) up to the hidden
width. RoBERTa's position ids start after the padding index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.jobspec.families.base import Axes, Family, Head, Layout

HEADS_GO_WITH_HIDDEN = (
    "a BERT-family config derives the head size from hidden_size / num_attention_heads, "
    "so heads cannot go at a fixed hidden width; use 'hidden' (which removes heads with "
    "the channels), 'ffn' or 'layers'"
)


def encoder_layer_axes(projections: str) -> dict[str, Axes]:
    """BERT's per-layer rules, its self-attention projections named by ``projections``
    (a regex group under ``attention.self``)."""
    return {
        rf"attention\.self\.{projections}\.weight": ("q", "hidden"),
        rf"attention\.self\.{projections}\.bias": ("q",),
        r"attention\.output\.dense\.weight": ("hidden", "q"),
        r"attention\.output\.dense\.bias": ("hidden",),
        r"attention\.output\.LayerNorm\.(weight|bias)": ("hidden",),
        r"intermediate\.dense\.weight": ("ffn", "hidden"),
        r"intermediate\.dense\.bias": ("ffn",),
        r"output\.dense\.weight": ("hidden", "ffn"),
        r"output\.dense\.bias": ("hidden",),
        r"output\.LayerNorm\.(weight|bias)": ("hidden",),
    }


class Bert(Family):
    name = "bert"
    model_types = ("bert", "electra")
    impossible: ClassVar[Mapping[str, str]] = {"heads": HEADS_GO_WITH_HIDDEN}
    onnx = ("bert", "electra")
    task_head = ("classifier", "pooler")
    query, key, value = (f"attention.self.{n}" for n in ("query", "key", "value"))
    output = "attention.output.dense"
    ffn_up, ffn_down = "intermediate.dense", "output.dense"
    layer_norms = ("attention.output.LayerNorm", "output.LayerNorm")
    # At the hidden width only without a projection (prune_width checks which).
    model_norms = ("embeddings.LayerNorm",)
    heads = (
        Head("{base}.pooler.dense", "classifier"),
        Head("classifier.dense", "classifier.out_proj"),
    )
    layer_axes: ClassVar[Mapping[str, Axes]] = encoder_layer_axes(r"(query|key|value)")
    model_axes: ClassVar[Mapping[str, Axes]] = {
        r"{base}\.embeddings\.(word|position|token_type)_embeddings\.weight": (None, "emb"),
        r"{base}\.embeddings\.LayerNorm\.(weight|bias)": ("emb",),
        r"{base}\.embeddings_project\.weight": ("hidden", None),
        r"{base}\.embeddings_project\.bias": ("hidden",),
        r"{base}\.pooler\.dense\.weight": ("cls", "hidden"),
        r"{base}\.pooler\.dense\.bias": ("cls",),
        r"classifier\.weight": (None, "cls"),
        r"classifier\.dense\.weight": ("cls", "hidden"),
        r"classifier\.dense\.bias": ("cls",),
        r"classifier\.out_proj\.weight": (None, "cls"),
    }

    def projected_embeddings(self, model: Any) -> bool:
        return getattr(model.base_model, "embeddings_project", None) is not None

    def check_hidden(self, model: Any, hidden_size: int) -> str | None:
        width = getattr(model.config, "embedding_size", None)
        if self.projected_embeddings(model) and hidden_size == width:
            return (
                f"hidden width {hidden_size} equals the embedding size: the config would "
                "drop the embedding projection the teacher's weights need"
            )
        return None

    def layout(self, config: Mapping[str, Any], *, head_dense: bool) -> Layout:
        embedding_size = config.get("embedding_size")
        projected = embedding_size not in (None, int(config[self.keys.hidden]))
        return Layout(
            head_dense=head_dense,
            embedding_size=int(embedding_size) if projected else None,
        )

    def resized(
        self, config: Any, *, hidden_size: int | None, head_dim: int, num_kv_heads: int | None
    ) -> None:
        # Without a projection ELECTRA's embeddings are as wide as the hidden width.
        if hidden_size is not None and getattr(config, "embedding_size", None) == getattr(
            config, self.keys.hidden
        ):
            config.embedding_size = hidden_size


class Roberta(Bert):
    name = "roberta"
    model_types = ("roberta", "xlm-roberta")
    onnx = ("roberta", "xlm-roberta")
    position_offset = True


FAMILIES = (Bert(), Roberta())
