#!/usr/bin/env bash
# The cost of the front door's token check and of TLS: four `clockwork serve` on one demo
# repository (plain, token, TLS, TLS + token), all running at once, each driven in turn by the
# same closed-loop `clockwork bench` over HTTP and gRPC, ROUNDS times, so that the machine's other
# load falls on all four alike. Certificates are made here with openssl.
# Usage: bench/auth_tls_cost.sh REPOSITORY [SECONDS] [ROUNDS]
set -euo pipefail
REPO=${1:?usage: bench/auth_tls_cost.sh REPOSITORY [SECONDS] [ROUNDS]}
SECONDS_RUN=${2:-15}
ROUNDS=${3:-2}
CW=${CW:-.venv/bin/clockwork}
PY=${PY:-.venv/bin/python}
BASE_PORT=${BASE_PORT:-18700}
WORK=$(mktemp -d /tmp/auth-tls-cost.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait; rm -rf "$WORK"; }
trap cleanup EXIT

# a CA and a server certificate for 127.0.0.1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 1 -extfile "$WORK/ext" -out "$WORK/server.pem" 2>/dev/null
openssl rand -hex 32 > "$WORK/token"
chmod 600 "$WORK/token" "$WORK/server.key"

NAMES=(plain token tls tls+token)
TLS_ARGS=(--tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key")
declare -A SERVE CLIENT SCHEME GSCHEME
SERVE[plain]=""; CLIENT[plain]=""; SCHEME[plain]=http; GSCHEME[plain]=grpc
SERVE[token]="--token-file $WORK/token"; CLIENT[token]="--token-file $WORK/token"
SCHEME[token]=http; GSCHEME[token]=grpc
SERVE[tls]="${TLS_ARGS[*]}"; CLIENT[tls]="--tls-ca $WORK/ca.pem"; SCHEME[tls]=https
GSCHEME[tls]=grpcs
SERVE[tls+token]="${TLS_ARGS[*]} --token-file $WORK/token"
CLIENT[tls+token]="--tls-ca $WORK/ca.pem --token-file $WORK/token"
SCHEME[tls+token]=https; GSCHEME[tls+token]=grpcs

i=0
for name in "${NAMES[@]}"; do
  http=$((BASE_PORT + 2 * i)); grpc=$((http + 1)); i=$((i + 1))
  : > "$WORK/serve-$name.log"
  # shellcheck disable=SC2086 # the options are words
  env -u CLOCKWORK_TOKEN -u CLOCKWORK_CONTROL_TOKEN "$CW" serve --repository "$REPO" \
    --http-port "$http" --grpc-port "$grpc" --device cpu --status-interval 0 ${SERVE[$name]} \
    > "$WORK/serve-$name.log" 2>&1 &
  PIDS+=($!)
  HTTP_URL[$i]="${SCHEME[$name]}://127.0.0.1:$http"; GRPC_URL[$i]="${GSCHEME[$name]}://127.0.0.1:$grpc"
done
for name in "${NAMES[@]}"; do
  until grep -q "Ctrl-C stops the server" "$WORK/serve-$name.log"; do sleep 0.5; done
done

printf '%-10s %-5s %5s %8s %8s %8s %8s\n' config proto round requests "req/s" "p50 ms" "p99 ms"
for round in $(seq 1 "$ROUNDS"); do
  for proto in http grpc; do
    i=0
    for name in "${NAMES[@]}"; do
      i=$((i + 1))
      url=${HTTP_URL[$i]}; [ "$proto" = grpc ] && url=${GRPC_URL[$i]}
      out="$WORK/bench-$name-$proto-$round"
      # shellcheck disable=SC2086
      env -u CLOCKWORK_TOKEN "$CW" bench --url "$url" --workload closed --clients 1 \
        --duration "$SECONDS_RUN" --slo-ms 500 --seed 1 --quiet --no-plots --out "$out" \
        ${CLIENT[$name]} > /dev/null
      "$PY" - "$out/summary.json" "$name" "$proto" "$round" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lat = s["latency_ms"]
print(f"{sys.argv[2]:<10} {sys.argv[3]:<5} {sys.argv[4]:>5} {s['requests']:>8} "
      f"{s['requests'] / s['duration_s']:>8.1f} {lat['p50']:>8.2f} {lat['p99']:>8.2f}"
      f"  errors {s['client_errors']}")
PY
    done
  done
done
