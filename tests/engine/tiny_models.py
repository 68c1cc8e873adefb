"""Tiny random models and batches for the pruning tests, built in memory in milliseconds.

A tiny Llama (hidden 64, 4 layers, 8 query heads over 2 KV heads of size 8) and tiny
BERT-family encoders, each with a sequence-classification head, plus helpers to
compare logits and to save and reload a student with the plain Auto class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    ElectraConfig,
    LlamaConfig,
    PreTrainedModel,
    RobertaConfig,
)

from workers.engine.data import Batch

VOCAB = 40
PAD = 0


def tiny_llama(seed: int = 0, **overrides: object) -> PreTrainedModel:
    settings: dict[str, object] = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "intermediate_size": 96,
        "pad_token_id": PAD,
        "num_labels": 2,
        "max_position_embeddings": 64,
    }
    settings.update(overrides)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(LlamaConfig(**settings)).eval()


def tiny_encoder(
    kind: str = "bert", seed: int = 0, *, tokens: bool = False, **overrides: object
) -> PreTrainedModel:
    """Hidden 32 in 4 heads of 8, FFN 64, 4 layers (ELECTRA: embeddings of 16); a
    sequence-classification head, or a token-classification one with ``tokens``."""
    settings: dict[str, object] = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "num_labels": 2,
    }
    config_class = {"bert": BertConfig, "roberta": RobertaConfig, "electra": ElectraConfig}[kind]
    if kind == "roberta":
        settings["pad_token_id"] = 1
    if kind == "electra":
        settings["embedding_size"] = 16
    settings.update(overrides)
    torch.manual_seed(seed)
    auto = AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification
    return auto.from_config(config_class(**settings)).eval()


def random_batches(
    count: int = 2, *, seed: int = 0, batch: int = 8, length: int = 12
) -> list[Batch]:
    """Token ids 5..VOCAB-1 with right padding in some rows, and labels."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(5, VOCAB, (batch, length), generator=generator)
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        ids = ids * mask + PAD * (1 - mask)
        labels = torch.randint(0, 2, (batch,), generator=generator)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def logits(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """Eval-mode logits (a freshly built student is in training mode, dropout on)."""
    model.eval()
    with torch.inference_mode():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def reload(model: PreTrainedModel, folder: Path, *, tokens: bool = False) -> PreTrainedModel:
    """Save with safetensors and load back with nothing but the plain Auto class."""
    model.save_pretrained(folder)
    auto = AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification
    return auto.from_pretrained(folder, use_safetensors=True).eval()
