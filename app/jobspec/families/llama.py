"""Llama-like decoders used as classifiers: Llama, Mistral, Qwen2.

Layers in ``<base>.layers``; attention ``self_attn.{q,k,v,o}_proj`` with an explicit
``head_dim`` and ``num_key_value_heads`` (key/value head j serves query heads j·g ...
j·g + g - 1), so hidden width and heads are independent; a gated FFN
``mlp.{gate,up,down}_proj``; RMSNorms (no bias) before attention and FFN, and a final
norm; a bias-free ``score`` head on every position. ``LlamaConfig`` validates that the
heads divide the hidden width, ``head_dim`` notwithstanding (plan.py rounds for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.jobspec.families.base import Axes, Family, Layout


class Llama(Family):
    name = "llama"
    model_types = ("llama", "mistral", "qwen2")
    structures = ("layers", "ffn", "hidden", "heads")
    onnx = ("llama",)
    task_head = ("score",)
    layers = "layers"
    embeddings = "embed_tokens"
    query, key, value, output = (f"self_attn.{n}_proj" for n in "qkvo")
    ffn_up, ffn_down, ffn_gate = "mlp.up_proj", "mlp.down_proj", "mlp.gate_proj"
    layer_norms = ("input_layernorm", "post_attention_layernorm")
    model_norms = ("norm",)
    layer_axes: ClassVar[Mapping[str, Axes]] = {
        r"self_attn\.q_proj\.weight": ("q", "hidden"),
        r"self_attn\.q_proj\.bias": ("q",),
        r"self_attn\.(k|v)_proj\.weight": ("kv", "hidden"),
        r"self_attn\.(k|v)_proj\.bias": ("kv",),
        r"self_attn\.o_proj\.weight": ("hidden", "q"),
        r"self_attn\.o_proj\.bias": ("hidden",),
        r"mlp\.(gate|up)_proj\.weight": ("ffn", "hidden"),
        r"mlp\.(gate|up)_proj\.bias": ("ffn",),
        r"mlp\.down_proj\.weight": ("hidden", "ffn"),
        r"mlp\.down_proj\.bias": ("hidden",),
        r"(input|post_attention)_layernorm\.weight": ("hidden",),
    }
    model_axes: ClassVar[Mapping[str, Axes]] = {
        r"{base}\.embed_tokens\.weight": (None, "hidden"),
        r"{base}\.norm\.weight": ("hidden",),
        r"score\.weight": (None, "hidden"),
    }
    rms_norms = (r"(input|post_attention)_layernorm\.weight", r"{base}\.norm\.weight")

    def layout(self, config: Mapping[str, Any], *, head_dense: bool) -> Layout:
        model_type = config.get("model_type")
        attention_bias = bool(config.get("attention_bias", False))
        return Layout(
            explicit_heads=True,
            # Qwen2 has q/k/v biases and a bias-free o_proj; Mistral has none.
            qkv_bias=model_type == "qwen2" or attention_bias,
            o_bias=attention_bias and model_type == "llama",
            gated=True,
            mlp_bias=bool(config.get("mlp_bias", False)) and model_type == "llama",
            norm_bias=False,
            extra_norms=1,
            head_dense=False,
            classifier_bias=False,
        )

    def head_dim(self, config: Mapping[str, Any]) -> int:
        heads = int(config.get(self.keys.heads) or 0)
        if heads <= 0:
            raise ValueError("a Llama-family config needs num_attention_heads")
        return int(config.get("head_dim") or int(config[self.keys.hidden]) // heads)

    def resized(
        self, config: Any, *, hidden_size: int | None, head_dim: int, num_kv_heads: int | None
    ) -> None:
        config.head_dim = head_dim  # explicit: hidden / heads no longer gives it
        if num_kv_heads is not None:
            config.num_key_value_heads = num_kv_heads


FAMILIES = (Llama(),)
