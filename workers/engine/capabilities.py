"""What this engine release supports, in plain Python so the API can validate requests
against it without importing torch."""

TASKS = ("sequence-classification",)
STRATEGIES = ("prune_then_distill",)
TARGETS = ("params_ratio",)
# What structured pruning can remove; "layers" must be among those asked for. With
# "ffn" too, the target is met by fewer layers and narrower FFNs (workers/engine/plan.py).
STRUCTURED = ("layers", "ffn")
# How FFN neurons are ranked (workers/engine/importance.py); the first is the default.
IMPORTANCE = ("taylor", "activation", "magnitude")
UNSTRUCTURED = False
LOSSES = ("ce", "kd_kl", "hidden_mse")
ATTENTION_LOSS = False
# BERT-family encoders whose layers live in ``<base>.encoder.layer`` and whose config
# a shallower, narrower copy can describe by ``num_hidden_layers`` and
# ``intermediate_size`` alone.
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
