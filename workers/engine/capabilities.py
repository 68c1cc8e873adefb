"""What this engine release supports, in plain Python so the API can validate requests
against it without importing torch."""

TASKS = ("sequence-classification",)
STRATEGIES = ("prune_then_distill",)
TARGETS = ("params_ratio",)
# BERT-family encoders whose layers live in ``<base>.encoder.layer`` and whose config
# a shallower copy can describe by ``num_hidden_layers`` alone.
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
