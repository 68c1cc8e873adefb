"""What this engine release supports, in plain Python so the API can validate requests
against it without importing torch.

The API refuses at job creation (422 ``not_supported_yet``) whatever is not listed here,
so enabling a feature in the engine means adding it here, and nothing in the API.
"""

TASKS = ("sequence-classification", "token-classification")
STRATEGIES = ("prune_then_distill",)
TARGETS = ("params_ratio", "sparsity")
# Patterns a ``sparsity`` target may use, once "sparsity" is among TARGETS.
SPARSITY_PATTERNS: tuple[str, ...] = ("unstructured", "2:4")
# What structured pruning can remove; "layers" must be among those asked for. With
# "ffn" too, the target is met by fewer layers and narrower FFNs (workers/engine/plan.py).
STRUCTURED = ("layers", "ffn")
# How FFN neurons are ranked (workers/engine/importance.py); the first is the default.
IMPORTANCE = ("taylor", "activation", "magnitude")
UNSTRUCTURED = True
LOSSES = ("ce", "kd_kl", "hidden_mse")
ATTENTION_LOSS = False
# Teacher logits computed once and reused every epoch instead of a teacher forward pass
# per step.
CACHE_TEACHER_LOGITS = False
# BERT-family encoders whose layers live in ``<base>.encoder.layer`` and whose config
# a shallower, narrower copy can describe by ``num_hidden_layers`` and
# ``intermediate_size`` alone.
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
# The Auto class suffix of a teacher's head for each task: a head of another kind (or
# for another label count) is replaced and trained before distillation.
HEAD_ARCHITECTURE_SUFFIX = {
    "sequence-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
}
