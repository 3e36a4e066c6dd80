"""The values an integer input may take: read from the file where it shows them (an embedding's
rows), written into config.pbtxt, given by hand where it does not, and refused when wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clockwork.core.errors import InvalidInputError
from clockwork.models.errors import ModelRepositoryError
from clockwork.models.model_export import export_onnx as export_onnx_file
from clockwork.models.model_import import import_model
from clockwork.models.repository import ModelRepository
from clockwork.models.tensors import TensorSpec, dtype_bounds
from clockwork.worker.backends.base import BackendError
from clockwork.worker.backends.torch_backend import TorchBackend

from support.own_models import VOCAB, export_both

KEY = "clockwork.value_range"


class Counts(nn.Module):
    """An integer input that indexes nothing: any INT32 value is fine."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Linear(4, 2)

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.scale(counts.float())
        return out


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_both("encoder", tmp_path_factory.mktemp("files"))


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_an_embedding_index_gets_the_table_s_range(
    tmp_path: Path, encoder_files: dict[str, Path], fmt: str
) -> None:
    config = import_model(tmp_path, encoder_files[fmt], "enc", max_batch_size=2)
    assert config.inputs[0].value_range == (0, VOCAB - 1)
    text = (tmp_path / "enc" / "config.pbtxt").read_text()
    assert f'key: "{KEY}.tokens" value: {{ string_value: "0..{VOCAB - 1}" }}' in text
    reread = ModelRepository(tmp_path).load_config("enc")
    assert reread.input_ranges == {"tokens": (0, VOCAB - 1)} and reread.notes == ()

    # the worker refuses too (a batch that reached it by another way than the front door)
    backend = TorchBackend(ModelRepository(tmp_path), "cpu", models=["enc"])
    backend.load("enc")
    ids = np.zeros(8, dtype=np.int64)
    backend.infer("enc", 1, [{"tokens": ids}])
    ids[5] = VOCAB
    with pytest.raises(BackendError, match=rf"'tokens' has values outside \[0, {VOCAB}\)"):
        backend.infer("enc", 1, [{"tokens": ids}])


def test_where_the_file_does_not_show_it_the_config_says_so_and_takes_one(
    tmp_path: Path,
) -> None:
    net = Counts().eval()
    path = tmp_path / "counts.onnx"
    export_onnx_file(net, (torch.zeros(2, 4, dtype=torch.int32),), ["counts"], ["out"], path)
    repo_dir = tmp_path / "repo"
    config = import_model(repo_dir, path, "counts", max_batch_size=2)
    assert config.inputs[0].value_range is None and config.input_ranges == {}
    pbtxt = repo_dir / "counts" / "config.pbtxt"
    text = pbtxt.read_text()
    assert "# input 'counts': the file does not show which values it takes" in text
    assert ModelRepository(repo_dir).load_config("counts").input_ranges == {}

    def with_parameter(value: str, name: str = "counts") -> str:
        return text + f'parameters {{ key: "{KEY}.{name}" value: {{ string_value: "{value}" }} }}\n'

    pbtxt.write_text(with_parameter("-3..1000"))
    assert ModelRepository(repo_dir).load_config("counts").input_ranges == {"counts": (-3, 1000)}
    for value, name, problem in [
        ("0..x", "counts", "LEAST..GREATEST"),
        ("7", "counts", "LEAST..GREATEST"),
        ("9..2", "counts", "least <= greatest"),
        ("0..4294967296", "counts", "within INT32's"),
        ("0..9", "count", "has no input 'count'"),
    ]:
        pbtxt.write_text(with_parameter(value, name))
        with pytest.raises(ModelRepositoryError, match=problem):
            ModelRepository(repo_dir).load_config("counts")
    # other parameters are noted as ignored, as before
    pbtxt.write_text(text + 'parameters { key: "other" value: { string_value: "1" } }\n')
    (note,) = ModelRepository(repo_dir).load_config("counts").notes
    assert "parameter 'other' is not used" in note


def test_config_json_ranges() -> None:
    spec = TensorSpec.from_json({"name": "ids", "dtype": "INT64", "shape": [4], "range": [0, 9]})
    assert spec.value_range == (0, 9)
    assert TensorSpec.from_json(spec.to_json()) == spec
    assert dtype_bounds("UINT8") == (0, 255) and dtype_bounds("FP32") is None
    with pytest.raises(InvalidInputError, match="for integer tensors, not FP32"):
        TensorSpec("x", "FP32", (4,), (0, 1))
    with pytest.raises(InvalidInputError, match="within UINT8's"):
        TensorSpec("x", "UINT8", (4,), (-1, 3))
    with pytest.raises(InvalidInputError, match=r"range must be \[least, greatest\]"):
        TensorSpec.from_json({"name": "x", "dtype": "INT8", "shape": [1], "range": "0..3"})
