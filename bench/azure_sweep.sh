#!/usr/bin/env bash
# Azure Functions 2019 replay, 4,026 models, 6 simulated V100-32GB, 100 ms SLO, noise on
# (log-normal sigma 0.01 and 1e-4 stragglers x2), at several load factors, both policies.
#
# One hour of trace = 60 trace minutes. MINUTE_S compresses each minute (6 s: the hour runs in
# 360 s of virtual time, with the same per-minute counts and 10x faster changes between minutes).
#
# usage: bench/azure_sweep.sh OUT_DIR [MINUTE_S] [LOAD_FACTORS] [POLICIES] [TRACE_MINUTES]
set -euo pipefail
out=${1:?usage: bench/azure_sweep.sh OUT_DIR [MINUTE_S] [LOAD_FACTORS] [POLICIES]}
minute_s=${2:-6}
lfs=${3:-"0.25 0.5 0.8 1.0"}
policies=${4:-"clockwork reactive"}
trace_minutes=${5:-60}
trace=${TRACE:-../shared/data/traces/azure_functions_2019_sample500/invocations.csv}
duration=$(python3 -c "print($trace_minutes * $minute_s)")
cw=${CLOCKWORK:-.venv/bin/clockwork}
mkdir -p "$out"
for lf in $lfs; do
  for policy in $policies; do
    dir="$out/lf${lf}-${policy}"
    echo "== load factor $lf, policy $policy -> $dir" >&2
    "$cw" sim --workload azure --trace "$trace" --models 4026 --gpus 6 --duration "$duration" \
      --minute-s "$minute_s" --load-factor "$lf" --slo-ms 100 --policy "$policy" --seed 1 \
      --noise lognormal+straggler --out "$dir" --quiet | tee "$dir.txt"
  done
done
