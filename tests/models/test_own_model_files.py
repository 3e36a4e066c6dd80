"""Model files of one's own: import, safe loading, signatures checked, errors a user can act on."""

from __future__ import annotations

import logging
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clockwork.core.errors import InvalidInputError
from clockwork.models.formats import ModelFormat
from clockwork.models.model_import import import_model
from clockwork.models.repository import ModelRepository
from clockwork.models.tensors import TensorSpec

from support.own_models import example, export_both, make_net


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_both("mlp", tmp_path_factory.mktemp("files"))


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_import_fills_the_config_from_the_file(
    tmp_path: Path, files: dict[str, Path], fmt: str
) -> None:
    config = import_model(tmp_path, files[fmt], "mlp", max_batch_size=8)
    assert config.format is ModelFormat.parse(fmt)
    assert config.inputs == (TensorSpec("features", "FP32", (16,)),)
    assert [(t.dtype, t.shape) for t in config.outputs] == [("FP32", (4,))]
    assert config.batch_sizes == (1, 2, 4, 8)
    assert (tmp_path / "mlp" / "config.pbtxt").is_file()
    assert (tmp_path / "mlp" / "1" / f"model.{fmt}").is_file()
    repo = ModelRepository(tmp_path)
    assert repo.scan() == {"mlp": config}
    assert repo.scan_errors() == []
    with pytest.raises(InvalidInputError, match="already exists"):
        import_model(tmp_path, files[fmt], "mlp")


def test_import_refuses_pickles_and_torchscript(tmp_path: Path) -> None:
    net = make_net("mlp")
    scripted = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a user's old file, made here
        torch.jit.script(net).save(str(scripted))  # type: ignore[no-untyped-call]
    with pytest.raises(InvalidInputError, match=r"TorchScript.*torch\.export"):
        import_model(tmp_path / "repo", scripted, "a")
    # the same files renamed .pt2 are refused by their content, and not unpickled
    for source in (scripted, tmp_path / "sd.pt"):
        if not source.exists():
            torch.save(net.state_dict(), source)
        renamed = tmp_path / f"{source.stem}.pt2"
        shutil.copyfile(source, renamed)
        with pytest.raises(InvalidInputError, match="not loaded; export the model instead"):
            import_model(tmp_path / "repo", renamed, "a")
    assert not (tmp_path / "repo").exists()


def test_import_refuses_a_fixed_batch(tmp_path: Path) -> None:
    net = make_net("mlp")
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(net, (example("mlp", 4),)), str(path))
    with pytest.raises(InvalidInputError, match="dynamic batch dimension"):
        import_model(tmp_path / "repo", path, "fixed")


def test_a_pt2_with_pickled_weights_is_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    # the weights config of an archive marks a tensor as pickled: torch.export.load would
    # unpickle it with weights_only=False
    bad = tmp_path / "pickled.pt2"
    with zipfile.ZipFile(files["pt2"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("model_weights_config.json"):
                data = data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
                data = data.replace(b'"use_pickle":false', b'"use_pickle":true', 1)
            dst.writestr(item, data)
    with pytest.raises(InvalidInputError, match="stored pickled"):
        import_model(tmp_path / "repo", bad, "p")


def test_bad_models_are_reported_and_do_not_stop_the_others(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    for name in ("good", "missing", "corrupt", "mismatch", "unsupported"):
        import_model(tmp_path, files["onnx"], name)
    import_model(tmp_path, files["pt2"], "corrupt-pt2")
    (tmp_path / "missing" / "1" / "model.onnx").unlink()
    (tmp_path / "corrupt" / "1" / "model.onnx").write_bytes(b"\x08garbage" * 10)
    (tmp_path / "corrupt-pt2" / "1" / "model.pt2").write_bytes(b"not a zip")
    pbtxt = tmp_path / "mismatch" / "config.pbtxt"
    pbtxt.write_text(pbtxt.read_text().replace("dims: [ 16 ]", "dims: [ 17 ]"))
    (tmp_path / "unsupported" / "config.pbtxt").write_text(
        'platform: "pytorch_libtorch"\nmax_batch_size: 4\n'
    )
    repo = ModelRepository(tmp_path)
    assert list(repo.scan()) == ["good"]
    errors = {e.model: str(e) for e in repo.scan_errors()}
    assert set(errors) == {"missing", "corrupt", "corrupt-pt2", "mismatch", "unsupported"}
    assert "model.onnx: missing model file" in errors["missing"]
    assert "not a valid ONNX file" in errors["corrupt"]
    assert "not a torch.export archive" in errors["corrupt-pt2"]
    assert "[17] in the config" in errors["mismatch"] and "features" in errors["mismatch"]
    assert "config.pbtxt" in errors["unsupported"] and "torch.export" in errors["unsupported"]


def test_an_operator_onnx_runtime_lacks_is_reported(tmp_path: Path, files: dict[str, Path]) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["features"], ["scores"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    fancy = tmp_path / "fancy.onnx"
    onnx.save(proto, str(fancy))
    with pytest.raises(InvalidInputError, match="FancyOp"):
        import_model(tmp_path / "repo", fancy, "fancy")
    # the same file put in place of a good model's: listed as broken, with ORT's reason
    import_model(tmp_path / "repo", files["onnx"], "fancy")
    shutil.copyfile(fancy, tmp_path / "repo" / "fancy" / "1" / "model.onnx")
    repo = ModelRepository(tmp_path / "repo")
    assert repo.scan() == {}
    (error,) = repo.scan_errors()
    assert (
        "ONNX Runtime" in str(error) and "cannot run it" in str(error) and "FancyOp" in str(error)
    )


def test_onnx_with_external_data_is_imported_with_its_data(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    import onnx

    from clockwork.worker.backends.torch_backend import TorchBackend

    proto = onnx.load(str(files["onnx"]))
    split = tmp_path / "split"
    split.mkdir()
    onnx.save_model(
        proto,
        str(split / "mlp.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="mlp.weights",
        size_threshold=0,
    )
    assert (split / "mlp.weights").stat().st_size > 0
    import_model(tmp_path / "repo", split / "mlp.onnx", "split")
    assert (tmp_path / "repo" / "split" / "1" / "mlp.weights").is_file()
    backend = TorchBackend(ModelRepository(tmp_path / "repo"), "cpu")
    backend.load("split")
    x = example("mlp", 2, seed=4)
    out = backend.infer("split", 2, [{"features": x[i].numpy()} for i in range(2)]).outputs
    with torch.inference_mode():
        expected = make_net("mlp")(x).numpy()
    np.testing.assert_allclose(np.stack([o["scores"] for o in out]), expected, rtol=1e-4, atol=1e-5)


def test_a_worker_logs_each_broken_model_at_start(
    tmp_path: Path, files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from clockwork.core.errors import ConfigurationError
    from clockwork.worker.assembly import torch_setup

    import_model(tmp_path, files["onnx"], "good")
    import_model(tmp_path, files["onnx"], "gone")
    (tmp_path / "gone" / "1" / "model.onnx").unlink()
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigurationError, match="profile"):
        torch_setup("w0", tmp_path, "cpu")  # no model has a profile: nothing to serve
    assert "model gone is not served" in caplog.text
    assert "gone/1/model.onnx: missing model file" in caplog.text
