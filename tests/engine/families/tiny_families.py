"""Configs of tiny random DistilBERT, DeBERTa-v3 (and v2-style) and ModernBERT models
over the tiny test vocabulary: hidden 32 in 4 heads of 8, FFN 64, 4 layers. Shared by
the family tests and the end-to-end job test."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DebertaV2Config,
    DistilBertConfig,
    ModernBertConfig,
    PretrainedConfig,
    PreTrainedModel,
)

from tests.engine.tiny_models import PAD, VOCAB

# Sizes under the standard config keys (DeBERTa, ModernBERT).
SIZES: dict[str, object] = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "pad_token_id": PAD,
}


def distilbert_config(vocab: int = VOCAB, **overrides: object) -> PretrainedConfig:
    settings: dict[str, object] = {
        "vocab_size": vocab,
        "dim": 32,
        "n_layers": 4,
        "n_heads": 4,
        "hidden_dim": 64,
        "max_position_embeddings": 64,
        "pad_token_id": PAD,
    }
    return DistilBertConfig(**{**settings, **overrides})


def deberta_v3_config(vocab: int = VOCAB, **overrides: object) -> PretrainedConfig:
    """DeBERTa-v3's settings: relative attention over log buckets with shared keys, its
    own LayerNorm on the relative embeddings, no absolute positions, no token types."""
    settings: dict[str, object] = {
        **SIZES,
        "vocab_size": vocab,
        "relative_attention": True,
        "position_buckets": 8,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "type_vocab_size": 0,
        "max_relative_positions": -1,
    }
    return DebertaV2Config(**{**settings, **overrides})


def modernbert_config(vocab: int = VOCAB, **overrides: object) -> PretrainedConfig:
    """Global attention in layers 0 and 3, a local window of 8 tokens in 1 and 2."""
    settings: dict[str, object] = {
        **SIZES,
        "vocab_size": vocab,
        "local_attention": 8,
        "bos_token_id": 2,
        "cls_token_id": 2,
        "eos_token_id": 3,
        "sep_token_id": 3,
    }
    return ModernBertConfig(**{**settings, **overrides})


def tiny(
    config: PretrainedConfig, *, seed: int = 0, tokens: bool = False, num_labels: int = 2
) -> PreTrainedModel:
    config.num_labels = num_labels
    torch.manual_seed(seed)
    auto = AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification
    return auto.from_config(config).eval()


# Each family's configs over the tiny test vocabulary (tests/tiny.py), for teachers saved
# with a tokenizer.
CONFIGS = {
    "distilbert": distilbert_config,
    "deberta-v2": deberta_v3_config,
    "modernbert": modernbert_config,
}


def save_teacher(folder: Path, model_type: str, *, seed: int = 0) -> Path:
    """A headless base checkpoint of the family (as a Hub base model is) and a WordPiece
    tokenizer over the tiny sentiment vocabulary, asking only for the inputs the family
    takes (DistilBERT and ModernBERT have no token types)."""
    from transformers import AutoModel, BertTokenizer

    from tests.tiny import VOCAB as WORDS

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    config = CONFIGS[model_type](vocab=len(WORDS))
    inputs = ["input_ids", "attention_mask"]
    if getattr(config, "type_vocab_size", 0):
        inputs.append("token_type_ids")
    tokenizer = BertTokenizer.from_pretrained(folder, model_input_names=inputs)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder
