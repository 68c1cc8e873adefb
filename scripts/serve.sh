#!/usr/bin/env bash
# The first command: run modelpress on this machine, nothing else needed.
#
#   scripts/serve.sh [--host H] [--port P]
#
# Creates .venv if needed (torch==2.13.0 first, then -e .[worker,demo]) and execs
# `modelpress serve`: migrations, a Celery worker and the API in one command, with a
# SQLite database, a filesystem broker and artifact files under MODELPRESS_HOME
# (default ./.modelpress). Any MODELPRESS_* variable still applies.
#
# pip's output goes to .venv/pip-install.log (shown, with its path, if pip fails); the
# service's last start-up line gives its URL and the next step (create a key).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"

# A venv set up for the tests (.[dev]) already holds everything serve needs.
if ! venv_current dev && ! venv_current worker,demo; then
    mkdir -p "$VENV"
    export MODELPRESS_PIP_LOG=${MODELPRESS_PIP_LOG:-$VENV/pip-install.log}
    : >"$MODELPRESS_PIP_LOG"
    ensure_venv worker,demo
    echo "[venv] done; pip's log: $MODELPRESS_PIP_LOG" >&2
fi

# Models come from uploads, never from a hub; set HF_HUB_OFFLINE=0 to allow downloads.
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-$HF_HUB_OFFLINE}
exec "$VENV/bin/modelpress" serve "$@"
