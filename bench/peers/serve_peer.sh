#!/usr/bin/env bash
# Start or stop one of the compared servers, serving a Clockwork model repository over the Open
# Inference Protocol (HTTP) on 127.0.0.1:PORT.
#
# Usage:
#   bench/peers/serve_peer.sh SYSTEM REPO PORT    start in the background; wait until
#                                                 GET /v2/health/ready answers 200 and the
#                                                 repository index lists every model of REPO as
#                                                 READY; print the PIDs
#   bench/peers/serve_peer.sh stop SYSTEM PORT    stop it: SIGTERM to its first process, SIGKILL
#                                                 to what is left of its session and descendants
#                                                 after 15 s (then `ray stop --force` for ray)
# SYSTEM: clockwork | ray | mlserver.
#
# Each server runs in its own session (setsid); its log, PID and (MLServer) generated settings lie
# in $PEER_RUN_DIR/SYSTEM-PORT/ (default bench/peers/runs/). Every process of the server is
# reniced to 0 once ready (Ray starts its workers at nice 15; ray_app.py already asks for 0).
#   clockwork: .venv/bin/clockwork serve --threads 1 --grpc-port 0 ($CLOCKWORK_SERVE_ARGS added)
#   ray:       ray_app.py in $RAY_VENV (default bench/peers/.venv-ray, see setup_ray.sh),
#              $RAY_APP_ARGS added (e.g. --layout split)
#   mlserver:  mlserver_repo.py + `mlserver start` in $MLSERVER_VENV (bench/peers/.venv-mlserver);
#              its gRPC and metrics servers listen on PORT+1 and PORT+2
# $READY_TIMEOUT_S (default 600) bounds the wait; a Clockwork worker profiles models that have no
# profile first, which is slow: run `clockwork profile REPO` before.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
run_dir=${PEER_RUN_DIR:-$here/runs}
ray_venv=${RAY_VENV:-$here/.venv-ray}
ml_venv=${MLSERVER_VENV:-$here/.venv-mlserver}
timeout_s=${READY_TIMEOUT_S:-600}

usage() {
    sed -n '5,13p' "$0" >&2
    exit 2
}

check_system() {
    case $1 in
        clockwork | ray | mlserver) ;;
        *) echo "serve_peer: unknown system '$1' (clockwork, ray or mlserver)" >&2; exit 2 ;;
    esac
}

# the PIDs of every live process in session $1 or descended from process $1 (Clockwork's worker
# runs in a session of its own)
server_pids() {
    ps -eo pid=,ppid=,sid= | awk -v r="$1" '
        { pid[NR] = $1; ppid[NR] = $2; sid[NR] = $3 }
        END {
            for (i = 1; i <= NR; i++) if (pid[i] == r || sid[i] == r) keep[pid[i]] = 1
            do {
                changed = 0
                for (i = 1; i <= NR; i++)
                    if (!(pid[i] in keep) && (ppid[i] in keep)) { keep[pid[i]] = 1; changed = 1 }
            } while (changed)
            for (i = 1; i <= NR; i++) if (pid[i] in keep) print pid[i]
        }'
}

# those of the PIDs $@ that are still running
alive() {
    local p
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null; then echo "$p"; fi
    done
}

stop_server() {
    local system=$1 port=$2
    local state=$run_dir/$system-$port
    if [[ ! -f $state/pid ]]; then
        echo "serve_peer: no $system server on port $port to stop ($state/pid missing)"
        return 0
    fi
    local sid
    sid=$(cat "$state/pid")
    local -a pids
    mapfile -t pids < <(server_pids "$sid")
    if ((${#pids[@]})); then
        echo "serve_peer: stopping $system on port $port (pids ${pids[*]})"
        kill -TERM "$sid" 2>/dev/null || true
        for _ in $(seq 150); do
            [[ -z $(alive "${pids[@]}") ]] && break
            sleep 0.1
        done
        mapfile -t pids < <(alive "${pids[@]}")
        if ((${#pids[@]})); then
            echo "serve_peer: still running after 15 s, killing ${pids[*]}"
            kill -KILL "${pids[@]}" 2>/dev/null || true
        fi
    fi
    if [[ $system == ray && -x $ray_venv/bin/ray ]]; then
        "$ray_venv/bin/ray" stop --force >/dev/null 2>&1 || true
    fi
    rm -f "$state/pid"
    echo "serve_peer: $system on port $port stopped"
}

# 0 when every model directory of $1 is READY in the index at port $2
all_ready() {
    local repo=$1 port=$2
    local index
    index=$(curl -s -m 5 -X POST -H 'Content-Type: application/json' -d '{}' \
        "http://127.0.0.1:$port/v2/repository/index") || return 1
    python3 - "$repo" "$index" <<'EOF'
import json, sys
from pathlib import Path
repo = Path(sys.argv[1])
want = {d.name for d in repo.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
        and ((d / "config.json").is_file() or (d / "config.pbtxt").is_file())}
try:
    index = json.loads(sys.argv[2])
except ValueError:
    sys.exit(1)
ready = {m.get("name") for m in index if str(m.get("state", "")).upper() == "READY"}
sys.exit(0 if want and want <= ready else 1)
EOF
}

start_server() {
    local system=$1 repo=$2 port=$3
    [[ -d $repo ]] || { echo "serve_peer: repository $repo does not exist" >&2; exit 2; }
    repo=$(cd "$repo" && pwd)
    local state=$run_dir/$system-$port
    mkdir -p "$state"
    if [[ -f $state/pid ]] && [[ -n $(server_pids "$(cat "$state/pid")") ]]; then
        echo "serve_peer: a $system server is already running on port $port" \
            "(pid $(cat "$state/pid")); stop it first" >&2
        exit 1
    fi
    if curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/v2"; then
        echo "serve_peer: something already answers on port $port" >&2
        exit 1
    fi
    local log=$state/server.log
    local -a cmd
    local workdir=$state
    case $system in
        clockwork)
            [[ -x $root/.venv/bin/clockwork ]] || { echo "serve_peer: run make install" >&2; exit 2; }
            # shellcheck disable=SC2206
            cmd=("$root/.venv/bin/clockwork" serve --repository "$repo" --host 127.0.0.1
                --http-port "$port" --grpc-port 0 --threads 1 --status-interval 0
                ${CLOCKWORK_SERVE_ARGS:-})
            ;;
        ray)
            [[ -x $ray_venv/bin/python ]] || { echo "serve_peer: run setup_ray.sh" >&2; exit 2; }
            # shellcheck disable=SC2206
            cmd=(env "PYTHONPATH=$here" RAY_worker_niceness=0 RAY_USAGE_STATS_ENABLED=0
                "$ray_venv/bin/python" "$here/ray_app.py" --repository "$repo"
                --host 127.0.0.1 --port "$port" ${RAY_APP_ARGS:-})
            ;;
        mlserver)
            [[ -x $ml_venv/bin/mlserver ]] || { echo "serve_peer: run setup_mlserver.sh" >&2; exit 2; }
            workdir=$state/mlserver-repo
            rm -rf "$workdir"
            "$ml_venv/bin/python" "$here/mlserver_repo.py" "$repo" "$workdir" --http-port "$port" \
                --grpc-port $((port + 1)) --metrics-port $((port + 2))
            cmd=(env "PYTHONPATH=$here" "$ml_venv/bin/mlserver" start .)
            ;;
    esac
    echo "serve_peer: starting $system on port $port: ${cmd[*]}"
    local t0=$SECONDS
    (cd "$workdir" && exec setsid "${cmd[@]}" >"$log" 2>&1 </dev/null) &
    local pid=$!
    echo "$pid" >"$state/pid"
    while true; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "serve_peer: $system exited before it was ready; the end of $log:" >&2
            tail -20 "$log" >&2
            rm -f "$state/pid"
            exit 1
        fi
        if [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:$port/v2/health/ready") == 200 ]] && all_ready "$repo" "$port"; then
            break
        fi
        if ((SECONDS - t0 > timeout_s)); then
            echo "serve_peer: $system not ready after $timeout_s s; stopping it" >&2
            stop_server "$system" "$port"
            exit 1
        fi
        sleep 0.5
    done
    # Ray runs its workers at nice 15 unless told otherwise: everything of the session at 0
    local niced
    niced=$(ps -o pid=,ni= -p "$(server_pids "$pid" | paste -sd,)" | awk '$2 != 0 { print $1 }' |
        tr '\n' ' ')
    if [[ -n $niced ]]; then
        echo "serve_peer: renicing to 0: $niced"
        # shellcheck disable=SC2086
        renice -n 0 -p $niced >/dev/null
    fi
    echo "serve_peer: $system ready on http://127.0.0.1:$port after $((SECONDS - t0)) s;" \
        "pids $(server_pids "$pid" | tr '\n' ' ')(log $log)"
}

case ${1:-} in
    stop)
        [[ $# -eq 3 ]] || usage
        check_system "$2"
        stop_server "$2" "$3"
        ;;
    clockwork | ray | mlserver)
        [[ $# -eq 3 ]] || usage
        start_server "$1" "$2" "$3"
        ;;
    *) usage ;;
esac
