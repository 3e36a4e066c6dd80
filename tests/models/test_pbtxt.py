"""The protobuf text-format reader and Triton's config.pbtxt as a ModelConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from clockwork.core.errors import InvalidInputError
from clockwork.models.formats import ModelFormat
from clockwork.models.pbtxt import Enum, PbtxtError, TextMessage, parse_pbtxt
from clockwork.models.tensors import TensorSpec
from clockwork.models.triton_config import parse_triton_config, write_triton_config

TRITON_EXAMPLE = """
# as Triton's documentation writes one
name: "resnet"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "input0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 4, 4 ]
  }
]
output [ { name: "out", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100 }
instance_group [ { count: 2, kind: KIND_CPU } ]
version_policy: { latest: { num_versions: 2 } }
"""


def model_dir(tmp_path: Path, name: str = "resnet", versions: tuple[int, ...] = (1, 2, 3)) -> Path:
    d = tmp_path / name
    for v in versions:
        (d / str(v)).mkdir(parents=True)
    (d / "notes").mkdir()  # not a version
    return d


def test_parse_scalars_lists_and_nesting() -> None:
    msg = parse_pbtxt(
        "a: 1 b: -2.5e1 c: \"x\\ty\" 'z' d: TYPE_FP32 e [1, 2] e: 3; f { g: 0x10 } f < g: 2 >"
    )
    assert msg.values("a") == [1]
    assert msg.values("b") == [-25.0]
    assert msg.values("c") == ["x\tyz"]
    assert msg.values("d") == [Enum("TYPE_FP32")]
    assert msg.values("e") == [1, 2, 3]
    inner = msg.values("f")
    assert len(inner) == 2 and all(isinstance(m, TextMessage) for m in inner)
    assert [m.values("g") for m in inner if isinstance(m, TextMessage)] == [[16], [2]]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: 1\nb { c: 2", "end of text"),
        ("a: 1\n  b: }", "line 2, column 6"),
        ("a 1", "line 1, column 3"),
        ('a: "open\n', "line 1, column 4"),
        ("a: [1, 2", "end of text"),
    ],
)
def test_syntax_errors_name_the_place(text: str, where: str) -> None:
    with pytest.raises(PbtxtError, match=where):
        parse_pbtxt(text)


def test_triton_config_fields(tmp_path: Path) -> None:
    config = parse_triton_config(TRITON_EXAMPLE, model_dir(tmp_path))
    assert config.name == "resnet"
    assert config.format is ModelFormat.ONNX
    assert config.model_filename == "model.onnx"
    assert config.versions == (2, 3)  # latest 2 of the numbered directories
    assert config.max_batch_size == 8
    assert config.batch_sizes == (1, 4, 8)
    assert config.inputs == (TensorSpec("input0", "FP32", (3, 4, 4)),)
    assert config.outputs == (TensorSpec("out", "FP32", (10,)),)
    notes = "\n".join(config.notes)
    # unknown fields are kept as notes, each named
    assert "instance_group" in notes and "format" in notes
    assert "max_queue_delay_microseconds" in notes


def test_written_config_reads_back(tmp_path: Path) -> None:
    config = parse_triton_config(TRITON_EXAMPLE, model_dir(tmp_path))
    again = parse_triton_config(write_triton_config(config), tmp_path / "resnet")
    assert again == config
    assert not again.notes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("onnxruntime_onnx", "pytorch_libtorch"), "torch.export"),
        (("onnxruntime_onnx", "tensorrt_plan"), "ONNX"),
        (("max_batch_size: 8", "max_batch_size: 0"), "max_batch_size >= 1"),
        (("dims: [ 3, 4, 4 ]", "dims: [ 3, -1, -1 ]"), "fixed sizes"),
        (("TYPE_FP32\n", "TYPE_STRING\n"), "not served"),
        (('name: "resnet"', 'name: "other"'), "does not match its directory"),
        (("latest: { num_versions: 2 }", "specific: { versions: [4] }"), "no directory"),
        (("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 9 ]"), "preferred_batch_size"),
    ],
)
def test_triton_config_errors(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in TRITON_EXAMPLE
    with pytest.raises(InvalidInputError, match=message):
        parse_triton_config(TRITON_EXAMPLE.replace(old, new), model_dir(tmp_path))


def test_pytorch_backend_with_a_pt2_file(tmp_path: Path) -> None:
    text = TRITON_EXAMPLE.replace(
        'platform: "onnxruntime_onnx"', 'backend: "pytorch"\ndefault_model_filename: "net.pt2"'
    )
    config = parse_triton_config(text, model_dir(tmp_path))
    assert config.format is ModelFormat.TORCH_EXPORT
    assert config.model_filename == "net.pt2"
    with pytest.raises(InvalidInputError, match="TorchScript"):
        parse_triton_config(text.replace("net.pt2", "model.pt"), model_dir(tmp_path / "b"))
