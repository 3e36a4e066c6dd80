#!/usr/bin/env bash
# The controller's limit: bench-cluster with enough emulated GPUs that the devices are never the
# bottleneck (24 emulated V100s in 2 worker processes, 16 models: large batches), Poisson
# arrivals at RATE, 100 ms SLO, 15 s; beside it the same configuration in `clockwork sim`.
# Run it with each build's clockwork (.venv/bin/clockwork, .venv-compiled/bin/clockwork).
#
# usage: bench/cluster_limit.sh OUT_DIR "RATES" [REPEATS]
set -euo pipefail
out=${1:?usage: bench/cluster_limit.sh OUT_DIR "RATES" [REPEATS]}
rates=${2:?rates, e.g. "8000 10000 12000"}
repeats=${3:-1}
cw=${CLOCKWORK:-.venv/bin/clockwork}
mkdir -p "$out"
for rate in $rates; do
  for i in $(seq "$repeats"); do
    dir="$out/cluster-$rate-$i"
    echo "== bench-cluster at $rate requests/s, run $i -> $dir" >&2
    "$cw" bench-cluster --workers 2 --gpus-per-worker 12 --models 16 --workload poisson \
      --rate "$rate" --duration 15 --slo-ms 100 --seed 1 --out "$dir" --no-plots --quiet \
      | tee "$dir.txt"
  done
  "$cw" sim --workload poisson --models 16 --gpus 24 --gpus-per-worker 12 --rate "$rate" \
    --duration 15 --slo-ms 100 --seed 1 --out "$out/sim-$rate" --no-plots --quiet \
    | tee "$out/sim-$rate.txt"
done
