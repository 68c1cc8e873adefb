"""The vocabulary of a compression job: every name a request may use (tasks, target
kinds, strategies, pruning structures, importance criteria, losses, export formats,
runtimes, model families), defined here once, in plain Python.

The API derives its request schema's enums from these lists (``app/jobs/schemas.py``)
and refuses at job creation (422 ``not_supported_yet``) what the release does not do;
the engine registers its parts under these names and checks at import that the two
agree (``app/jobspec/registry.py``). Enabling a feature means adding its name here and its
code in the engine, and nothing in the API. ``tests/app/jobspec/test_one_vocabulary.py``
fails if a list of these names is written out anywhere else.
"""

from app.jobspec import families

SEQUENCE_CLASSIFICATION = "sequence-classification"
TOKEN_CLASSIFICATION = "token-classification"
TASKS = (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION)
# How pruning and distillation alternate (workers/engine/strategies.py); the first is
# the default.
STRATEGIES = ("prune_then_distill", "distill_then_prune", "joint")
DEFAULT_STRATEGY = STRATEGIES[0]
# Strategies that distil in rounds need an epoch per round at least (strategies.py).
MIN_EPOCHS = {"distill_then_prune": 2}
# What a target may say it is: a fraction of the teacher's parameters kept, of single
# weights zeroed, or a speed-up; or, answered by a sweep of speed-up students (issue
# #17, docs/sweeps.md), the least share of the teacher's score kept (the fastest student
# that keeps it) or the most latency allowed (the most accurate student that fits).
# values.py reads a target's kind from these fields.
SINGLE_TARGET_KINDS = ("params_ratio", "sparsity", "speedup")
SWEEP_TARGET_KINDS = ("min_retention", "max_latency_ms")
TARGET_KINDS = (*SINGLE_TARGET_KINDS, *SWEEP_TARGET_KINDS)
# The kinds this release plans for (a subset, to hold one back: not_supported_yet).
# The sweeps run in the service (app/sweeps/); ``modelpress compress`` runs one target.
TARGETS = TARGET_KINDS
# The kinds measured in a runtime (target.runtime): a speedup, and the sweeps, whose
# candidates are speedup targets in that runtime.
RUNTIME_TARGET_KINDS = ("speedup", *SWEEP_TARGET_KINDS)
# Strategies a ``speedup`` target is planned for: joint's intermediate rounds plan
# by parameters and could leave an FFN narrower than the final shape needs.
SPEEDUP_STRATEGIES = ("prune_then_distill", "distill_then_prune")
# Patterns a ``sparsity`` target may use, once "sparsity" is among TARGETS; the first
# is the default.
SPARSITY_PATTERNS: tuple[str, ...] = ("unstructured", "2:4")
DEFAULT_PATTERN = SPARSITY_PATTERNS[0]
# What structured pruning can remove; "layers" must be among those asked for. The plan
# (app/jobspec/plan.py) narrows the allowed widths first (FFN neurons, hidden
# channels, attention heads: Llama-family only, key-value groups kept whole), then
# drops layers. BERT-family "hidden" removes whole heads with their channels.
# The structures that narrow every layer, the finest grid first (plan.py narrows them
# before it drops layers): FFN neurons, then the widths that move in whole heads.
HEAD_WIDTHS = ("hidden", "heads")
WIDTHS = ("ffn", *HEAD_WIDTHS)
STRUCTURES = ("layers", *WIDTHS)
# The structures this release removes (a subset, to hold one back: not_supported_yet);
# each family says which of them it can lose (families/).
STRUCTURED = STRUCTURES
# What a job may remove when it does not say (pruning.structured). Layers and FFN
# neurons: at params_ratio 0.5 on SST-2 they kept 84.2% to layers alone's 83.6% (full
# CPU run, bench/results/sst2-full-cpu2.json; 83.4% to 79.9% in the quick run), and a
# speedup target gets steps between whole layers: 2.15x landed at 2.39x keeping 99.5%
# (bench/results/sst2-full-cpu2-lr1e-4.json), where layers alone jump from 3 of 6
# layers (about 1.9x) to 2 (about 2.8x). See docs/engine.md, Defaults.
STRUCTURED_DEFAULT = ("layers", "ffn")
# How FFN neurons, heads, channels and single weights are ranked (one file each in
# workers/engine/criteria/); the first is the default.
IMPORTANCE = ("taylor", "activation", "magnitude")
DEFAULT_IMPORTANCE = IMPORTANCE[0]
UNSTRUCTURED = True
# The distillation losses (workers/engine/losses.py).
LOSSES = ("ce", "kd_kl", "hidden_mse", "attention_kl")
# distillation.attention: KL between teacher and student attention maps over the layer
# map (losses.attention_kl; eager attention while distilling).
ATTENTION_LOSS = True
# Teacher logits computed once and reused every epoch instead of a teacher forward pass
# per step. Only without the hidden-state and attention losses, which need that forward
# pass (distillation.hidden_states=false and attention=false).
CACHE_TEACHER_LOGITS = True
# The student's output formats (export.formats), each its own artifact scored and timed
# in the runtime it runs in: a save_pretrained folder (PyTorch), ONNX fp32 and ONNX int8
# (ONNX Runtime).
FORMAT_RUNTIMES = {"safetensors": "pytorch", "onnx": "onnxruntime", "onnx-int8": "onnxruntime-int8"}
EXPORT_FORMATS = tuple(FORMAT_RUNTIMES)
# The format a PyTorch run holds in memory anyway; the others are ONNX files.
PYTORCH_FORMAT = EXPORT_FORMATS[0]
ONNX_FORMATS = EXPORT_FORMATS[1:]
# Each format's artifact: "model", "model-onnx", "model-onnx-int8".
FORMAT_ARTIFACTS = {
    fmt: "model" if fmt == PYTORCH_FORMAT else f"model-{fmt}" for fmt in EXPORT_FORMATS
}
# The default is the safetensors folder alone. Any ONNX format costs the job the
# teacher's and the student's export and quantization, four scorings in ONNX Runtime and
# a six-model timing pass: on MiniLM-L6, 2 CPU cores, the evaluating phase took 52 s of
# an 81 s job (1,000 training rows, one epoch) on a quiet machine, 170 s of 587 s on a
# busy one (bench/results/onnx-int8-job-2026-12-04.md, onnx-int8-2026-12-04.md): little
# beside hours of distillation, much beside a short job. And ONNX is checked only for
# the families in ONNX_MODEL_TYPES, so a default with it would be refused for the
# others. Ask for "onnx-int8" to serve on CPU.
EXPORT_DEFAULT = (PYTORCH_FORMAT,)
# Runtimes a speedup (or sweep) target is measured in (teacher and student both in it),
# and the format the student must be exported in for the report to time it there (None:
# the PyTorch student is timed whatever the formats); the first is the default.
SPEEDUP_RUNTIMES = {
    runtime: None if fmt == PYTORCH_FORMAT else fmt for fmt, runtime in FORMAT_RUNTIMES.items()
}
DEFAULT_RUNTIME = next(iter(SPEEDUP_RUNTIMES))
# Families whose ONNX export (torch.onnx dynamo, fp32 and int8) is checked by the tests,
# each at batch sizes and lengths other than the exported example's: BERT, RoBERTa,
# ELECTRA and Llama classifiers in tests/engine/test_export_formats.py (XLM-R is
# RoBERTa's code); DistilBERT, DeBERTa-v2/v3 and ModernBERT teachers and pruned
# students, sequence and token heads, in tests/engine/families/test_onnx.py. Others
# (Mistral, Qwen2) are refused an ONNX format when the job is created. Each family's
# adapter says (families/).
ONNX_MODEL_TYPES = families.onnx_model_types()
# Families whose shallower, narrower copies a standard transformers config describes:
# one adapter per family in families/ (BERT, RoBERTa, XLM-R, ELECTRA,
# DistilBERT, DeBERTa-v2/v3, ModernBERT encoders; Llama, Mistral, Qwen2 decoders), each
# saying which structures it can lose (families.unsupported_structures).
MODEL_TYPES = families.model_types()
# The families by name (FAMILIES[i] is the adapter's ``name``).
FAMILIES = families.names()
# The Auto class suffix of a teacher's head for each task: a head of another kind (or
# for another label count) is replaced and trained before distillation.
HEAD_ARCHITECTURE_SUFFIX = {
    SEQUENCE_CLASSIFICATION: "ForSequenceClassification",
    TOKEN_CLASSIFICATION: "ForTokenClassification",
}
# The tasks whose head has a hidden dense before its output projection where the family
# has one (BERT's pooler, RoBERTa's classification dense); a token head is a projection
# alone (plan.teacher_sizes counts the parameters by it).
DENSE_HEAD_TASKS = (SEQUENCE_CLASSIFICATION,)
