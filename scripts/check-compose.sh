#!/usr/bin/env bash
# Validate docker-compose.yml with docker-compose 1.29 (Debian's `docker-compose`
# package), the oldest Compose this project supports: `docker-compose config -q`.
# No Docker engine is needed. Installs the package with apt-get when it is missing
# (as root; MODELPRESS_NO_APT=1 forbids that and fails instead).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v docker-compose >/dev/null 2>&1; then
    if [[ ${MODELPRESS_NO_APT:-0} == 1 || $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "[compose] docker-compose is not installed (apt-get install docker-compose)" >&2
        exit 1
    fi
    echo "[compose] installing docker-compose with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Without recommends: the package would pull in the Docker engine, unused here.
    apt-get install -y -q --no-install-recommends docker-compose >&2 || {
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends docker-compose >&2
    }
fi

echo "+ docker-compose config -q ($(docker-compose version --short 2>/dev/null || echo '?'))" >&2
# --project-directory: a .env there would feed the interpolation, as it does for `up`.
docker-compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" config -q
echo "[compose] docker-compose.yml is valid" >&2
