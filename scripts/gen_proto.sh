#!/usr/bin/env bash
# Regenerate the Python modules of the gRPC front door's protocol from
# src/clockwork/frontend/proto/inference.proto: inference_pb2.py, inference_pb2.pyi and
# inference_pb2_grpc.py, with the protoc that grpcio-tools bundles. The generated files are
# committed, so that serving needs only grpcio and protobuf; tests/frontend/test_grpc_proto.py
# checks that they match what this script writes.
#
# Two edits follow protoc, each checked so that a protoc whose output changes fails here rather
# than in an import at run time:
#  - the _grpc module's `import inference_pb2` becomes package-relative (protoc writes it for a
#    module on sys.path, and the modules live inside the clockwork package);
#  - the descriptors go into a private descriptor pool instead of protobuf's default one. The
#    messages keep Triton's names (inference.ModelInferRequest...), which tritonclient also puts
#    in the default pool; two files defining one symbol there cannot both load, and a process that
#    serves and also uses tritonclient (the tests, benchmarks) must be able to hold both.
#
# usage: scripts/gen_proto.sh [OUT_DIR]   (default: src/clockwork/frontend/proto, in place)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
proto_dir=src/clockwork/frontend/proto
out=${1:-$proto_dir}
mkdir -p "$out"

"$py" -m grpc_tools.protoc -I "$proto_dir" --python_out="$out" --grpc_python_out="$out" \
  --pyi_out="$out" inference.proto

grpc_mod=$out/inference_pb2_grpc.py
sed -i 's/^import inference_pb2 as inference__pb2$/from . import inference_pb2 as inference__pb2/' \
  "$grpc_mod"
grep -q '^from \. import inference_pb2 as inference__pb2$' "$grpc_mod" || {
  echo "gen_proto: no 'import inference_pb2' line to rewrite in $grpc_mod" >&2
  exit 1
}

pb2_mod=$out/inference_pb2.py
sed -i 's/^DESCRIPTOR = _descriptor_pool\.Default()\.AddSerializedFile(/_POOL = _descriptor_pool.DescriptorPool()  # clockwork: see scripts\/gen_proto.sh\nDESCRIPTOR = _POOL.AddSerializedFile(/' \
  "$pb2_mod"
grep -q '^DESCRIPTOR = _POOL\.AddSerializedFile(' "$pb2_mod" || {
  echo "gen_proto: no default-pool DESCRIPTOR line to rewrite in $pb2_mod" >&2
  exit 1
}
