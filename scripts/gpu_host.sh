# shellcheck shell=bash
# Sourced by scripts/gpu-smoke.sh and scripts/gpu-bench.sh, which run on a lent GPU host
# (the device tool): no network there, so the Python packages it lacks come as wheels in
# the carried folder (scripts/gpu_carry.py packs it here). The host's python3 (3.12) has
# torch and transformers; $PYTHON overrides it (a CPU dry run uses the project's .venv).

: "${ROOT:?ROOT must be set before sourcing gpu_host.sh}"
PYTHON=${PYTHON:-python3}
CARRY=${GPU_CARRY:-$ROOT/.gpu-carry}

gpu_host_wheels() { # kind log: install $CARRY/wheels-<kind>/requirements.txt from its wheels
    local dir=$CARRY/wheels-$1 log=$2 extra=()
    if [[ ! -f $dir/requirements.txt ]]; then
        echo "[gpu] no $dir/requirements.txt: nothing installed" | tee "$log" >&2
        return 0
    fi
    # --no-deps where the set is exact (scripts/gpu_carry.py says which).
    read -r -a extra <"$dir/pip-args" || true
    if ! "$PYTHON" -m pip install -q --no-index "${extra[@]}" --find-links "$dir" \
        -r "$dir/requirements.txt" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        return 1
    fi
}

gpu_host_describe() { # the GPU, the driver, torch and transformers
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    else
        echo "no nvidia-smi"
    fi
    local versions='import torch, transformers as t; print("torch", torch.__version__,
    "cuda", torch.version.cuda, "transformers", t.__version__)'
    "$PYTHON" -c "$versions"
}
