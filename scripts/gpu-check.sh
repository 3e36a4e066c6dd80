#!/usr/bin/env bash
# Check the torch backend on a CUDA GPU: profiles of the built-in models on the device, the paged
# weights cache against the plain module, host-to-device load bandwidth, and the spread
# (p50/p99/p99.99) of execution. Uses the repository's .venv (make install; it needs a CUDA build
# of torch there) and a temporary model repository. Exits 2 with a message when CUDA is missing.
#
# usage: scripts/gpu-check.sh [--device cuda:0] [--runs 5000] [--profile-runs 100] [--out DIR]
#        (every option goes to scripts/gpu_check.py; --help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
if [ ! -x "$py" ]; then
  echo "gpu-check: $py not found; run 'make install' first" >&2
  exit 2
fi
exec "$py" scripts/gpu_check.py "$@"
