#!/usr/bin/env bash
# Attainment and goodput of `clockwork serve` per model form, on one Poisson workload each.
# Usage: bench/own_models_serve.sh REPO MODEL... (env: RATE=40 DURATION=20 SLO_MS=100)
# e.g. after `clockwork models export REPO mobilenet_v2-0000 --out files --into REPO`:
#   bench/own_models_serve.sh REPO mobilenet_v2-0000 mobilenet_v2-0000-pt2 mobilenet_v2-0000-onnx
# Writes bench-<model>/ (clockwork bench reports) in the current directory.
set -u
REPO=$1; shift
C=${CLOCKWORK:-clockwork}
read -r HP GP <<< "$(python -c "from clockwork.service.bench_cluster import free_ports; print(*free_ports(2))")"
$C serve --repository "$REPO" --http-port "$HP" --grpc-port "$GP" --device cpu > serve.log 2>&1 &
SP=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$HP/v2/health/ready" >/dev/null && break; sleep 1; done
sleep 5
for M in "$@"; do
  echo "=== $M"
  $C bench --url "http://127.0.0.1:$HP" --models "$M" --workload poisson --rate "${RATE:-40}" \
    --duration "${DURATION:-20}" --slo-ms "${SLO_MS:-100}" --inputs random --out "bench-$M" \
    --no-plots --quiet 2>&1 | tail -25
done
kill -INT $SP
wait $SP
