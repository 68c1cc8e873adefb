"""What a model family tells the engine: the names of the modules that pruning and
distillation touch, the config keys that size them, what its parameter count depends on
(``Layout``) and which structures it can lose.

Plain Python (no torch): the API reads the same definitions to refuse what a family
cannot do yet. ``layers.py`` resolves the names on a loaded model; ``prune_width.py``
slices by the state-dict rules; ``plan.py`` counts parameters from the ``Layout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

# Axes a state-dict rule may tag a tensor's dimensions with (prune_width.py):
# "hidden" the residual stream, "emb" the embeddings' width (the hidden width unless a
# projection sits between), "ffn" FFN neurons, "ffn_halves" a gated FFN's fused input
# projection (neuron j is rows j and F + j), "q" query-head dimensions, "kv" key/value-
# head dimensions, "cls" the outputs of the head's hidden dense, None untouched.
Axes = tuple[str | None, ...]


@dataclass(frozen=True)
class Layout:
    """What the parameter count of a ``*ForSequenceClassification`` (or token
    classification) model depends on besides its sizes (plan.TeacherSizes counts)."""

    # head_dim and key-value heads in the config, independent of the hidden width
    # (Llama); otherwise heads = hidden / head size.
    explicit_heads: bool = False
    qkv_bias: bool = True
    o_bias: bool = True
    # A gated FFN has two projections whose rows are neurons (gate and up).
    gated: bool = False
    mlp_bias: bool = True
    norm_bias: bool = True  # LayerNorms with a bias (RMSNorms have none)
    layer_norms: int = 2  # per layer
    # ModernBERT's first layer has no attention norm (the embeddings' norm serves).
    first_layer_norms: int | None = None
    # Hidden-wide norms outside the layers and the embeddings (a final norm; DeBERTa's
    # relative-embedding norm).
    extra_norms: int = 0
    # Rows of hidden-wide tables outside the layers and the embeddings (DeBERTa's
    # relative position embeddings).
    hidden_rows: int = 0
    # Per layer, extra hidden x attention-width projections with a bias (DeBERTa's
    # pos_key_proj / pos_query_proj when attention keys are not shared).
    position_projections: int = 0
    # DeBERTa-v2's convolution beside the first layer: kernel size and groups (0: none).
    conv_kernel: int = 0
    conv_groups: int = 1
    # The head: a hidden dense before the output projection (BERT's pooler, RoBERTa's
    # classification dense), with a bias, and a norm after it (ModernBERT).
    head_dense: bool = True
    head_dense_bias: bool = True
    head_norm: bool = False
    classifier_bias: bool = True
    # ELECTRA's embedding width when a projection from it to the hidden width follows.
    embedding_size: int | None = None

    @property
    def norm_params(self) -> int:
        """Parameters per channel of one norm."""
        return 2 if self.norm_bias else 1


@dataclass(frozen=True)
class ConfigKeys:
    """config.json keys of the sizes (DistilBERT calls them n_layers, dim, ...)."""

    layers: str = "num_hidden_layers"
    hidden: str = "hidden_size"
    ffn: str = "intermediate_size"
    heads: str = "num_attention_heads"


@dataclass(frozen=True)
class Head:
    """A task head's hidden dense and the projection reading it, by name relative to
    the model ("{base}" is the base model's prefix)."""

    dense: str
    out: str


class Family:
    """One family's adapter. Module paths are dotted attribute paths: ``layers`` and
    ``embeddings`` relative to ``model.base_model``, the per-layer names relative to a
    layer, ``heads`` relative to the model."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    # What pruning.structured may hold for this family; "layers" always.
    structures: ClassVar[tuple[str, ...]] = ("layers", "ffn", "hidden")
    # Structures this family's config can never describe, with why and what instead
    # (refused as impossible, not as not-yet).
    impossible: ClassVar[Mapping[str, str]] = {}
    # The model types whose ONNX export the tests check (tests/engine/
    # test_export_formats.py, tests/engine/families/test_onnx.py); a job asking ONNX of
    # any other is refused.
    onnx: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[ConfigKeys] = ConfigKeys()
    layers: ClassVar[str] = "encoder.layer"
    embeddings: ClassVar[str] = "embeddings"
    query: ClassVar[str]
    key: ClassVar[str]
    value: ClassVar[str]
    output: ClassVar[str]
    ffn_up: ClassVar[str]
    ffn_down: ClassVar[str]
    ffn_gate: ClassVar[str | None] = None
    # The up projection holds [up; gate] stacked (ModernBERT's Wi).
    ffn_fused_gate: ClassVar[bool] = False
    # Norms at the residual width: per layer, and outside the layers (relative to the
    # base model); names that are not there (an Identity, an absent module) are skipped.
    layer_norms: ClassVar[tuple[str, ...]] = ()
    model_norms: ClassVar[tuple[str, ...]] = ()
    # Candidate task heads with a hidden dense, first match wins; none for heads that
    # are a projection alone.
    heads: ClassVar[tuple[Head, ...]] = ()
    # State-dict rules: per layer (relative to the layer) and for the rest of the model.
    layer_axes: ClassVar[Mapping[str, Axes]] = {}
    model_axes: ClassVar[Mapping[str, Axes]] = {}
    # RMSNorm scales that see the hidden width (rescaled when channels go).
    rms_norms: ClassVar[tuple[str, ...]] = ()
    # Modules a new task head initialises afresh (the head itself, a pooler or dense
    # before it), by name part: a base checkpoint may lack them.
    task_head: ClassVar[tuple[str, ...]] = ("classifier",)
    # Layer 0 differs from the others (ModernBERT's missing attention norm), so every
    # student keeps it as its first layer.
    keeps_first_layer: ClassVar[bool] = False
    # Position ids start after the padding index, costing pad_token_id + 1 positions.
    position_offset: ClassVar[bool] = False

    def projected_embeddings(self, model: Any) -> bool:
        """Whether a projection sits between the embeddings and the layers, so that the
        embeddings are not at the hidden width."""
        return False

    def check_hidden(self, model: Any, hidden_size: int) -> str | None:
        """Why a student of this hidden width cannot be described, or None."""
        return None

    def layout(self, config: Mapping[str, Any], *, head_dense: bool) -> Layout:
        """The parameter layout of this config's model (``head_dense``: whether the task
        head has a hidden dense, where the family's heads differ by task)."""
        return Layout(head_dense=head_dense)

    def head_dim(self, config: Mapping[str, Any]) -> int:
        """The attention head size (0 when the config does not say)."""
        hidden, heads = int(config[self.keys.hidden]), int(config.get(self.keys.heads) or 0)
        return hidden // heads if heads and hidden % heads == 0 else 0

    def resized(
        self, config: Any, *, hidden_size: int | None, head_dim: int, num_kv_heads: int | None
    ) -> None:
        """Edit a transformers config in place, before its sizes are set, for a student
        ``hidden_size`` wide (None: unchanged): whatever else follows the hidden width
        or the heads."""
