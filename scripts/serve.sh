#!/usr/bin/env bash
# The first command: run modelpress on this machine, nothing else needed.
#
#   scripts/serve.sh [--host H] [--port P]
#
# Creates .venv if needed (torch==2.13.0 first, then -e .[worker,demo]) and execs
# `modelpress serve`: migrations, a Celery worker and the API in one command, with a
# SQLite database, a filesystem broker and artifact files under MODELPRESS_HOME
# (default ./.modelpress). Any MODELPRESS_* variable still applies.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"

# A venv set up for the tests (.[dev]) already holds everything serve needs.
venv_current dev || ensure_venv worker,demo

# Models come from uploads, never from a hub; set HF_HUB_OFFLINE=0 to allow downloads.
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-$HF_HUB_OFFLINE}
exec "$VENV/bin/modelpress" serve "$@"
