# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/serve.sh: make .venv hold the project and an
# extra set and the client (clients/python), installing only when either pyproject.toml
# (or the extras) changed since last time.
#
#   ensure_venv dev            # .[dev]: what the tests need
#   ensure_venv worker,demo    # .[worker,demo]: what `modelpress serve` needs
#
# torch==2.13.0 is installed first, on its own: a bare torch requirement in a fresh
# environment makes pip take a multi-GB CUDA build, while this pin is served as a CPU
# wheel. MODELPRESS_TORCH_SPEC overrides the pin (e.g. a CUDA build on a GPU host).
# The newest numpy has no wheel for every Python here, hence --only-binary=numpy.
#
# MODELPRESS_PIP_LOG=FILE (serve.sh sets it): pip's output goes to FILE, one line per
# step is shown, and a failure prints the end of FILE and where it is. Unset (the test
# path), pip prints as usual.

: "${ROOT:?ROOT must be set before sourcing _venv.sh}"
VENV=${MODELPRESS_VENV:-$ROOT/.venv}
TORCH_SPEC=${MODELPRESS_TORCH_SPEC:-torch==2.13.0}

_venv_key() { # extras: what the stamp records; any change means reinstall
    {
        echo "extras=$1"
        echo "torch=$TORCH_SPEC"
        echo "root=$ROOT"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
        sha256sum "$ROOT/pyproject.toml" "$ROOT/clients/python/pyproject.toml" | cut -d' ' -f1
    } | sha256sum | cut -d' ' -f1
}

_venv_stamp() { echo "$VENV/.modelpress-installed-${1//,/-}"; }

venv_current() { # extras: true if the stamp for these extras is current
    [[ -x $VENV/bin/python && -f $(_venv_stamp "$1") ]] &&
        [[ $(cat "$(_venv_stamp "$1")") == "$(_venv_key "$1")" ]]
}

ensure_venv() { # extras
    local extras=$1
    if [[ ! -x $VENV/bin/python ]]; then
        echo "[venv] creating $VENV" >&2
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    if venv_current "$extras"; then
        return 0
    fi
    echo "[venv] installing $TORCH_SPEC, then -e .[$extras] into $VENV" >&2
    _pip "$TORCH_SPEC" "$TORCH_SPEC"
    _pip "modelpress[$extras] and its dependencies" --only-binary=numpy -e "${ROOT}[${extras}]"
    # The Python client (tests/client, the CLI's remote commands): httpx only.
    _pip "the Python client (clients/python)" -e "$ROOT/clients/python"
    _venv_key "$extras" >"$(_venv_stamp "$extras")"
}

_pip() { # what (for the log line), then pip install arguments
    local what=$1
    shift
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check install --progress-bar off)
    if [[ -z ${MODELPRESS_PIP_LOG:-} ]]; then
        "${pip[@]}" "$@"
        return
    fi
    echo "[venv]   pip install $what" >&2
    if ! "${pip[@]}" "$@" >>"$MODELPRESS_PIP_LOG" 2>&1; then
        tail -n 20 "$MODELPRESS_PIP_LOG" >&2
        echo "[venv] pip failed installing $what; its whole log: $MODELPRESS_PIP_LOG" >&2
        return 1
    fi
}
