#!/usr/bin/env bash
# scripts/gpu-bench.sh [--dry-run] [OUT]: the SST-2 and CoNLL-2003 benchmarks on all
# their rows on a lent H100/H200, in at most 9 minutes (bench/gpu_bench.py: the rows,
# their order, the time estimate and its basis). --dry-run: the same rows on a few
# examples on the CPU, in a minute or two (CI: tests/bench/test_gpu_bench.py).
#
# Here, once:  .venv/bin/python scripts/gpu_carry.py pack
#   (.gpu-carry/: MiniLM-L6 as float16, the SST-2 and CoNLL files, the seqeval wheel;
#   with the tree, about 55 MiB of the device tool's 64)
# There, in the device tool's run with carry [".gpu-carry"]:
#   bash scripts/gpu-bench.sh
#
# Writes into OUT (the argument, else $OUT, else /tmp/out):
#   gpu-bench-<gpu>-<date>.jsonl   one JSON line per row the moment it is done
#   gpu-bench.log                  the driver's progress
#   host.txt, pip.log              the GPU and versions; the wheels' install
# GPU_BENCH_BUDGET_S (540): no row starts that would end later, and the driver is
# stopped then; GPU_BENCH_WORK (/tmp/gpu-bench): data, teachers and models.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/gpu_host.sh
. "$ROOT/scripts/gpu_host.sh"

started=$(date +%s)
dry=()
if [[ ${1:-} == --dry-run ]]; then
    dry=(--dry-run)
    shift
fi
OUT=${1:-${OUT:-/tmp/out}}
WORK=${GPU_BENCH_WORK:-/tmp/gpu-bench}
BUDGET_S=${GPU_BENCH_BUDGET_S:-540}
mkdir -p "$OUT" "$WORK"
log=$OUT/gpu-bench.log

gpu_host_wheels bench "$OUT/pip.log"
gpu_host_describe | tee "$OUT/host.txt"
# MiniLM travelled as float16: float32 again, once per machine.
if [[ ! $WORK/base/minilm/model.safetensors -nt $CARRY/minilm-fp16/model.safetensors ]]; then
    "$PYTHON" scripts/gpu_carry.py unpack --carry "$CARRY" --dest "$WORK/base" | tee -a "$log"
fi

export MODELPRESS_BENCH_BASE_MODEL=$WORK/base/minilm
export MODELPRESS_BENCH_DATA=$CARRY/data
export MODELPRESS_BENCH_CACHE=$WORK/cache
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

# The driver skips a row it predicts would end past the budget; this stops it there
# whatever it predicted (the rows it finished are already written).
left=$((BUDGET_S - ($(date +%s) - started)))
((left > 0)) || left=1 # `timeout 0` would mean no limit at all
timeout --kill-after=10 "$left" "$PYTHON" bench/gpu_bench.py "${dry[@]}" --out "$OUT" \
    --work "$WORK/work" --started "$started" --budget-s "$BUDGET_S" 2>&1 | tee -a "$log"
