#!/usr/bin/env bash
# Create bench/.venv-inc: Intel Neural Compressor 3.7 in its own environment.
#
# INC 3.7 (the last release with the training-time pruning API) pins numpy<2 and needs
# setuptools<81 (pkg_resources) and six, which the project's .venv must not get. torch
# comes first, on its own, so that pip takes the CPU wheel this machine serves instead of
# a multi-GB CUDA build; transformers and datasets are pinned to the project's versions
# so both environments load the same checkpoints and read the same split files (the
# engine's data code, which run_inc.py shares, reads them with datasets). pyarrow 26
# needs numpy 2, which INC's pin forbids; 24 and 25 (datasets 5.2's floor) take 1.26.
#
#   bash bench/inc/setup.sh          # idempotent: re-runs skip a complete install
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${INC_VENV:-$ROOT/bench/.venv-inc}
PYTHON=${INC_PYTHON:-python3.11}
TORCH_SPEC=${MODELPRESS_TORCH_SPEC:-torch==2.13.0}
STAMP=$VENV/.inc-installed

if [[ -n ${TRANSFORMERS_VERSION:-} && -n ${DATASETS_VERSION:-} ]]; then
    tf_version=$TRANSFORMERS_VERSION
    ds_version=$DATASETS_VERSION
elif [[ -x $ROOT/.venv/bin/python ]]; then
    tf_version=$("$ROOT/.venv/bin/python" -c 'import transformers; print(transformers.__version__)')
    ds_version=$("$ROOT/.venv/bin/python" -c 'import datasets; print(datasets.__version__)')
else
    echo "[inc] no $ROOT/.venv to copy versions from; set TRANSFORMERS_VERSION and DATASETS_VERSION" >&2
    exit 2
fi
want="neural-compressor==3.7 transformers==$tf_version datasets==$ds_version pyarrow<26 $TORCH_SPEC"
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
    echo "[inc] $VENV is up to date ($want)" >&2
    exit 0
fi
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --progress-bar off "$TORCH_SPEC"
"${pip[@]}" install --progress-bar off --only-binary=numpy \
    "neural-compressor==3.7" "numpy<2" "setuptools<81" six "transformers==$tf_version" \
    "datasets==$ds_version" "pyarrow>=24,<26"
"$VENV/bin/python" -c 'import datasets, neural_compressor, torch, transformers; print("[inc] neural_compressor", neural_compressor.__version__, "torch", torch.__version__, "transformers", transformers.__version__, "datasets", datasets.__version__)'
echo "$want" >"$STAMP"
