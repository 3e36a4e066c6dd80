"""The gRPC protocol (KServe v2 / Triton): ``inference.proto`` and the modules that
``scripts/gen_proto.sh`` generates from it."""
