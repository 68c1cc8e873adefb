#!/usr/bin/env bash
# Run on a lent GPU host (the device tool) from the repository root, with a wheelhouse
# of the API's pure-Python dependencies for the host's Python carried in .gpu-wheels/
# (pip download --python-version 3.12 --only-binary=:all: -d .gpu-wheels fastapi ...).
# The host's own torch and transformers are used. Writes logs to $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .gpu-wheels fastapi uvicorn pydantic-settings \
  sqlalchemy alembic celery python-multipart boto3 >"$OUT/pip.log" 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 MODELPRESS_HOME=/tmp/modelpress-gpu MODELPRESS_GPU_WORKERS=true
python3 -m app.cli serve --port 8000 >"$OUT/serve.log" 2>&1 &
SERVE=$!
rc=0
python3 scripts/gpu_smoke.py http://127.0.0.1:8000 | tee "$OUT/gpu-smoke.json" || rc=$?
kill "$SERVE" 2>/dev/null || true
wait "$SERVE" 2>/dev/null || true
exit $rc
