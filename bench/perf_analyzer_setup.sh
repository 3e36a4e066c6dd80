#!/usr/bin/env bash
# Installs Triton's perf_analyzer into its own virtual environment (default /tmp/pa), the way
# ../shared/MEASURED.md found to work on this machine: PyPI's perf-analyzer wheels need glibc
# 2.38, so it comes from the tritonclient 2.41.1 wheel, which bundles bin/perf_analyzer; it needs
# the CUDA runtime library (even without a GPU) and libb64.
# Usage: bench/perf_analyzer_setup.sh [VENV]   then   VENV/bin/perf_analyzer (see below)
set -euo pipefail
venv=${1:-/tmp/pa}
if [ ! -x "$venv/bin/perf_analyzer" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'tritonclient[all]==2.41.1' nvidia-cuda-runtime-cu12 'numpy<2'
fi
if ! ldconfig -p | grep -q libb64.so.0d; then
    sudo -n apt-get install -y libb64-0d >/dev/null 2>&1 || apt-get install -y libb64-0d
fi
lib=$(echo "$venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib)
echo "perf_analyzer ready: LD_LIBRARY_PATH=$lib $venv/bin/perf_analyzer"
