#!/usr/bin/env bash
# Install Ray Serve, for bench/peers/ray_app.py, in its own virtual environment.
#
# Usage: bench/peers/setup_ray.sh [VENV]        (default: bench/peers/.venv-ray)
#
# The environment holds ray[serve] (pinned), torch (pinned to the CPU build this project uses:
# any other version downloads a multi-GB CUDA build), numpy, safetensors and this repository's
# package without its dependencies, so that the Ray app builds the very same modules with the same
# weights as Clockwork's worker (clockwork.models.repository.ModelRepository.build_module).
# Idempotent: a stamp file in the environment records what was installed; run it again after
# changing the pins below and it reinstalls.
set -euo pipefail

RAY_VERSION=2.60.0
TORCH_VERSION=2.13.0
# ONNX models (repositories made by `clockwork models import`): the pins of clockwork[torch]
ONNXRUNTIME_VERSION=1.32.0
ONNX_VERSION=1.23.2

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${1:-$here/.venv-ray}
python=${PYTHON:-python3}
reqs=("ray[serve]==$RAY_VERSION" "torch==$TORCH_VERSION" numpy "safetensors>=0.4" "onnxruntime==$ONNXRUNTIME_VERSION" "onnx==$ONNX_VERSION")
stamp=$venv/.peer-installed
want="${reqs[*]}"

if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "setup_ray: $venv is up to date ($want)"
    exit 0
fi
if [[ ! -x $venv/bin/python ]]; then
    echo "setup_ray: creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi
echo "setup_ray: installing ${reqs[*]} into $venv (about 1-2 minutes)"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "${reqs[@]}"
echo "setup_ray: installing this repository ($repo) without its dependencies"
"$venv/bin/pip" install --quiet --no-deps -e "$repo"
"$venv/bin/python" - <<'EOF'
import ray, torch
from ray import serve  # noqa: F401
from clockwork.models.repository import ModelRepository  # noqa: F401
print(f"setup_ray: ray {ray.__version__}, torch {torch.__version__}, clockwork importable")
EOF
echo "$want" > "$stamp"
echo "setup_ray: done; python is $venv/bin/python"
