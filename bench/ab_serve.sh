#!/usr/bin/env bash
# One A/B measurement of `clockwork serve` built from a given source tree: the same repository,
# client and Poisson arrivals for every build, so that two builds (e.g. a `git worktree` of an
# older commit and the current tree) can be run interleaved and compared (BENCHMARKS.md s.20).
#
# usage: bench/ab_serve.sh SRC_DIR LABEL RATE DURATION_S [serve args...]
#   REPO (default runs/repo16), PORT (default: a free one), OUT (default bench/results/ab) from the
#   environment. Prints "LABEL rate RATE: attainment X% goodput Y" and the refusals by status.
set -euo pipefail
src=$(cd "${1:?SRC_DIR}" && pwd); label=${2:?LABEL}; rate=${3:?RATE}; dur=${4:?DURATION_S}
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "${REPO:-$root/runs/repo16}" && pwd)
# a free port unless given: a server left over from an earlier run must never answer for this one
port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
out=${OUT:-$root/bench/results/ab}
py=$root/.venv/bin/python
models=$(ls "$repo" | grep -v '^_' | paste -sd, -)
mkdir -p "$out"
export XDG_STATE_HOME="$out/state-$label"  # no warm-start order carried between builds
cd "$src"
PYTHONPATH=$src/src "$py" -m clockwork.cli.main serve --repository "$repo" --host 127.0.0.1 \
  --http-port "$port" --grpc-port 0 --threads 1 --status-interval 0 "$@" \
  > "$out/serve-$label.log" 2>&1 &
pid=$!
stop() {
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -TERM "$pid" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 1 240); do
  curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$port/v2/health/ready" 2>/dev/null \
    | grep -q 200 && break
  sleep 0.5
done
if ! kill -0 "$pid" 2>/dev/null; then
  echo "ab_serve: the server of $label did not start; see $out/serve-$label.log" >&2
  exit 1
fi
sleep 3  # the warm start
bench() {
  PYTHONPATH=$src/src "$py" -m clockwork.cli.main bench --url "http://127.0.0.1:$port" \
    --models "$models" --json --workload poisson --no-plots --quiet --slo-ms 100 "$@"
}
bench --rate 10 --duration 3 --seed 1001 --out "$out/warm-$label" > /dev/null
bench --rate "$rate" --duration "$dur" --seed 2 --out "$out/$label-r$rate" > /dev/null
"$py" - "$out/$label-r$rate/summary.json" "$label" "$rate" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
refused = {k: v for k, v in s.get("refused", {}).items() if v}
print(f"{sys.argv[2]} rate {sys.argv[3]}: attainment {100 * s['slo_attainment']:.2f}% "
      f"goodput {s.get('goodput_rps', 0):.1f} refused {refused}")
EOF
