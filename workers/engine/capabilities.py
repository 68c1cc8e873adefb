"""What this engine release supports, in plain Python so the API can validate requests
against it without importing torch."""

TASKS = ("sequence-classification",)
STRATEGIES = ("prune_then_distill",)
TARGETS = ("params_ratio",)
# What structured pruning can remove; "layers" must be among those asked for.
STRUCTURED = ("layers",)
UNSTRUCTURED = False
LOSSES = ("ce", "kd_kl", "hidden_mse")
ATTENTION_LOSS = False
# BERT-family encoders whose layers live in ``<base>.encoder.layer`` and whose config
# a shallower copy can describe by ``num_hidden_layers`` alone.
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
