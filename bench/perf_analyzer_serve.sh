#!/usr/bin/env bash
# Triton's perf_analyzer against `clockwork serve` (demo repository: MobileNetV2 at 64x64 on the
# local worker, torch on CPU here), over HTTP and gRPC, concurrency 1, 2 and 4.
# Usage: bench/perf_analyzer_serve.sh [OUT_DIR]   (needs bench/perf_analyzer_setup.sh first)
# Writes OUT_DIR/{http,grpc}.csv (perf_analyzer -f), the full perf_analyzer output and the
# server's log. The server runs on ports 18200/18201 in a scratch directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/bench/results/perf_analyzer_serve}")
pa_venv=${PA_VENV:-/tmp/pa}
lib=$(echo "$pa_venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib)
mkdir -p "$out"
scratch=$(mktemp -d)
cd "$scratch"
"$root/.venv/bin/clockwork" serve --http-port 18200 --grpc-port 18201 --status-interval 0 \
    > "$out/server.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 300); do
    curl -sf http://127.0.0.1:18200/v2/health/ready >/dev/null && break
    sleep 1
done
curl -sf http://127.0.0.1:18200/v2/health/ready >/dev/null
for proto in http grpc; do
    port=$([ $proto = http ] && echo 18200 || echo 18201)
    LD_LIBRARY_PATH=$lib "$pa_venv/bin/perf_analyzer" -m mobilenet_v2-0000 \
        -u 127.0.0.1:$port -i $proto --concurrency-range 1:4:1 \
        --measurement-mode count_windows --measurement-request-count 300 -s 30 \
        --max-trials 6 -f "$out/$proto.csv" | tee "$out/$proto.txt"
done
