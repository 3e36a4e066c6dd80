#!/usr/bin/env bash
# Install MLServer, for bench/peers/mlserver_runtime.py, in its own virtual environment.
#
# Usage: bench/peers/setup_mlserver.sh [VENV]   (default: bench/peers/.venv-mlserver)
#
# The environment holds mlserver 1.7.x, uvloop < 0.22 (with the uvloop that pip picks, MLServer
# 1.7.1's inference workers die with "no current event loop" and no model loads), torch (pinned to
# the CPU build this project uses: any other version downloads a multi-GB CUDA build), numpy,
# safetensors and this repository's package without its dependencies, so that the runtime builds
# the very same modules with the same weights as Clockwork's worker.
# Idempotent: a stamp file in the environment records what was installed; run it again after
# changing the pins below and it reinstalls.
set -euo pipefail

MLSERVER_VERSION=1.7.1
TORCH_VERSION=2.13.0
# ONNX models (repositories made by `clockwork models import`): the pins of clockwork[torch]
ONNXRUNTIME_VERSION=1.32.0
ONNX_VERSION=1.23.2

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${1:-$here/.venv-mlserver}
python=${PYTHON:-python3}
reqs=("mlserver==$MLSERVER_VERSION" "uvloop<0.22" "torch==$TORCH_VERSION" numpy "safetensors>=0.4" "onnxruntime==$ONNXRUNTIME_VERSION" "onnx==$ONNX_VERSION")
stamp=$venv/.peer-installed
want="${reqs[*]}"

if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "setup_mlserver: $venv is up to date ($want)"
    exit 0
fi
if [[ ! -x $venv/bin/python ]]; then
    echo "setup_mlserver: creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi
echo "setup_mlserver: installing ${reqs[*]} into $venv (about 1-2 minutes)"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "${reqs[@]}"
echo "setup_mlserver: installing this repository ($repo) without its dependencies"
"$venv/bin/pip" install --quiet --no-deps -e "$repo"
"$venv/bin/python" - <<'EOF'
import mlserver, torch, uvloop
from clockwork.models.repository import ModelRepository  # noqa: F401
print(f"setup_mlserver: mlserver {mlserver.__version__}, uvloop {uvloop.__version__}, "
      f"torch {torch.__version__}, clockwork importable")
EOF
echo "$want" > "$stamp"
echo "setup_mlserver: done; mlserver is $venv/bin/mlserver"
