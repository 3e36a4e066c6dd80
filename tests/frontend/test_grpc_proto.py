"""The gRPC protocol files: the committed generated modules are what ``scripts/gen_proto.sh``
writes from ``inference.proto``, and that proto is wire-compatible with Triton's as the installed
tritonclient has it (same names, field numbers, types and methods)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clockwork.frontend.proto import inference_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "src" / "clockwork" / "frontend" / "proto"
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")
# what ties generated code to the generator's version; newer grpcio-tools write other values
_VERSION_LINES = re.compile(
    r"^(# Protobuf Python Version: .*|GRPC_GENERATED_VERSION = .*)$", re.MULTILINE
)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("grpc_tools")
    out = tmp_path_factory.mktemp("proto")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(out)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return out


def _serialized_descriptor(path: Path) -> bytes:
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            value = ast.literal_eval(node.args[0])
            assert isinstance(value, bytes)
            return value
    raise AssertionError(f"no AddSerializedFile call in {path}")


def test_committed_descriptor_matches_the_proto(regenerated: Path) -> None:
    assert _serialized_descriptor(PROTO_DIR / "inference_pb2.py") == _serialized_descriptor(
        regenerated / "inference_pb2.py"
    ), "inference.proto changed: run scripts/gen_proto.sh"


def test_committed_files_are_what_the_script_writes(regenerated: Path) -> None:
    committed = {n: (PROTO_DIR / n).read_text() for n in GENERATED}
    fresh = {n: (regenerated / n).read_text() for n in GENERATED}
    versions = [_VERSION_LINES.findall(committed[n]) for n in GENERATED]
    if versions != [_VERSION_LINES.findall(fresh[n]) for n in GENERATED]:
        pytest.skip(
            "the installed grpcio-tools is not the one that generated the committed "
            "files; the descriptor test still holds"
        )
    for name in GENERATED:
        assert committed[name] == fresh[name], f"{name} is stale: run scripts/gen_proto.sh"


def test_generated_code_keeps_out_of_the_default_pool() -> None:
    from google.protobuf import descriptor_pool

    # tritonclient registers the same message names there; both must load in one process
    assert pb.DESCRIPTOR.pool is not descriptor_pool.Default()


# --- wire compatibility with Triton ----------------------------------------------------------


def _messages(descriptors: Any) -> Iterator[Any]:
    for d in descriptors:
        yield d
        yield from _messages(d.nested_types)


def _type_name(field: Any) -> str:
    if field.message_type is not None:
        return str(field.message_type.full_name)
    if field.enum_type is not None:
        return str(field.enum_type.full_name)
    return ""


def test_wire_compatible_with_tritonclient() -> None:
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    theirs_pool = service_pb2.DESCRIPTOR.pool
    checked = 0
    for ours in _messages(pb.DESCRIPTOR.message_types_by_name.values()):
        theirs = theirs_pool.FindMessageTypeByName(ours.full_name)
        for f in ours.fields:
            t = theirs.fields_by_name.get(f.name)
            assert t is not None, f"{ours.full_name}.{f.name} is not Triton's"
            assert (f.number, f.type, f.is_repeated, _type_name(f)) == (
                t.number,
                t.type,
                t.is_repeated,
                _type_name(t),
            ), f"{ours.full_name}.{f.name}"
            assert (f.containing_oneof is None) == (t.containing_oneof is None)
            checked += 1
    assert checked > 100
    for ours in pb.DESCRIPTOR.enum_types_by_name.values():
        theirs = theirs_pool.FindEnumTypeByName(ours.full_name)
        assert {v.name: v.number for v in ours.values} == {v.name: v.number for v in theirs.values}
    ours_service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs_service = theirs_pool.FindServiceByName("inference.GRPCInferenceService")
    for m in ours_service.methods:
        t = theirs_service.methods_by_name[m.name]
        assert (
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
        ) == (
            t.input_type.full_name,
            t.output_type.full_name,
            t.client_streaming,
            t.server_streaming,
        )
    assert {m.name for m in ours_service.methods} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }
