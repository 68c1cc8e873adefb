#!/usr/bin/env bash
# The test command: scripts/test.sh [pytest arguments...]
#
# From a clean clone it creates .venv (torch==2.13.0 first, then -e .[dev]), starts
# PostgreSQL, Redis and SeaweedFS where they are not running (scripts/services.sh up),
# then runs `ruff check .`, the compose-file check when docker-compose is installed,
# and pytest in MODELPRESS_TEST_PROCESSES (default 2) processes (pytest-xdist; 0: one
# process, no xdist), printing the 25 slowest tests. Re-runs skip the install unless
# pyproject.toml changed. The servers it started stay up for the next run:
# `scripts/services.sh down` stops them.
#
# The tests find the servers through these variables (defaults below; values already
# set are kept):
#   MODELPRESS_TEST_POSTGRES_URL  MODELPRESS_TEST_REDIS_URL  MODELPRESS_TEST_S3_ENDPOINT
# (with N processes, each uses a Redis database of its own: the given one and the N-1
# below it; tests/services.py).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"

ensure_venv dev
export VIRTUAL_ENV=$VENV
export PATH="$VENV/bin:$PATH"

bash "$ROOT/scripts/services.sh" up

export MODELPRESS_TEST_POSTGRES_URL=${MODELPRESS_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
export MODELPRESS_TEST_REDIS_URL=${MODELPRESS_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export MODELPRESS_TEST_S3_ENDPOINT=${MODELPRESS_TEST_S3_ENDPOINT:-http://127.0.0.1:8333}
# Nothing may come from a model hub: the tests build their tiny models themselves.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

echo "+ ruff check ." >&2
ruff check .

if command -v docker-compose >/dev/null 2>&1; then
    bash "$ROOT/scripts/check-compose.sh"
else
    echo "[test] docker-compose not installed: compose file not checked (scripts/check-compose.sh)" >&2
fi

# Two processes on two cores: half the suite waits on leases, kills and sub-processes
# (tests/conftest.py puts those that assert on timings in two lanes, one test at a time
# in each, and starts the lanes first).
processes=${MODELPRESS_TEST_PROCESSES:-2}
parallel=()
if ((processes > 0)); then
    parallel=(-n "$processes" --dist loadgroup)
fi
echo "+ pytest -q ${parallel[*]} --durations=25 $*" >&2
exec pytest -q "${parallel[@]}" --durations=25 "$@"
