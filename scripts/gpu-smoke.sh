#!/usr/bin/env bash
# Run on a lent GPU host (the device tool) from the repository root, carrying .gpu-carry
# with the API's pure-Python dependencies for the host's Python as wheels (here, once:
# .venv/bin/python scripts/gpu_carry.py pack --for smoke). The host's own torch and
# transformers are used. Writes logs to $OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/gpu_host.sh
. "$ROOT/scripts/gpu_host.sh"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
gpu_host_wheels smoke "$OUT/pip.log"
gpu_host_describe
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 MODELPRESS_HOME=/tmp/modelpress-gpu MODELPRESS_GPU_WORKERS=true
"$PYTHON" -m app.cli serve --port 8000 >"$OUT/serve.log" 2>&1 &
SERVE=$!
rc=0
"$PYTHON" scripts/gpu_smoke.py http://127.0.0.1:8000 | tee "$OUT/gpu-smoke.json" || rc=$?
kill "$SERVE" 2>/dev/null || true
wait "$SERVE" 2>/dev/null || true
exit $rc
