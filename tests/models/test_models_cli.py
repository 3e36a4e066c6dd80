from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from clockwork.cli.main import main
from clockwork.models.repository import ModelRepository

TINY_ARGS = [
    "--arch", "transformer", "--seq-len", "8",
    "--param", "vocab_size=50", "--param", "d_model=16", "--param", "num_layers=1",
    "--param", "num_heads=2", "--param", "ffn_dim=32",
]  # fmt: skip


def test_create_then_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    code = main(
        [
            "models",
            "create",
            str(root),
            *TINY_ARGS,
            "--copies",
            "3",
            "--seed",
            "1",
            "--batch-sizes",
            "1,2,4",
            "--slo-ms",
            "50",
        ]
    )
    assert code == 0
    assert "created 3 model(s)" in capsys.readouterr().out
    configs = ModelRepository(root).scan()
    assert sorted(configs) == ["transformer-0000", "transformer-0001", "transformer-0002"]
    config = configs["transformer-0002"]
    assert config.batch_sizes == (1, 2, 4)
    assert config.default_slo_ms == 50.0
    assert config.arch_params["seq_len"] == 8
    assert config.arch_params["d_model"] == 16

    assert main(["models", "list", str(root)]) == 0
    captured = capsys.readouterr()
    assert "transformer-0001" in captured.out
    assert "input_ids:INT64[8]" in captured.out
    assert "1,2,4" in captured.out
    assert captured.err == ""


def test_list_reports_bad_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    assert (
        main(["models", "create", str(root), *TINY_ARGS, "--copies", "2", "--no-share-weights"])
        == 0
    )
    bad = root / "transformer-0001" / "1" / "model.safetensors"
    bad.write_bytes(b"junk")
    capsys.readouterr()
    assert main(["models", "list", str(root)]) == 1
    captured = capsys.readouterr()
    assert "transformer-0000" in captured.out
    # the broken model is not in the table, but listed as broken with its file and problem
    rows = [line for line in captured.out.splitlines() if "transformer-0001" in line]
    assert len(rows) == 1 and rows[0].startswith("BROKEN  transformer-0001  ")
    assert str(bad) in rows[0]
    assert str(bad) in captured.err


def test_create_refuses_existing_then_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    assert main(["models", "create", str(root), *TINY_ARGS]) == 0
    assert main(["models", "create", str(root), *TINY_ARGS]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["models", "create", str(root), *TINY_ARGS, "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--param", "colour=blue"], "no parameter 'colour'"),
        (["--param", "d_model"], "KEY=VALUE"),
        (["--param", "seq_len=4"], "given twice"),
        (["--batch-sizes", "2,4"], "must include 1"),
    ],
)
def test_create_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["models", "create", str(tmp_path / "r"), *TINY_ARGS, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resolution_is_for_image_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["models", "create", str(tmp_path / "r"), "--arch", "transformer", "--resolution", "32"]
    assert main(args) == 2
    assert "no parameter 'resolution'" in capsys.readouterr().err


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "create", "--help"])
    out = capsys.readouterr().out
    assert "default 1,2,4,8,16" in out
    assert "resnet50 (num_classes=1000, resolution=224)" in " ".join(out.split())


def test_archs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "archs"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_v2" in out and "seq_len=128" in out


def test_list_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_import_export_and_list_own_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    assert main(["models", "create", str(root), *TINY_ARGS, "--batch-sizes", "1,2,4"]) == 0
    out = tmp_path / "files"
    code = main(
        ["models", "export", str(root), "transformer-0000", "--out", str(out), "--into", str(root)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'transformer-0000.pt2'}" in printed
    assert f"wrote {out / 'transformer-0000.onnx'}" in printed
    configs = ModelRepository(root).scan()
    assert sorted(configs) == ["transformer-0000", "transformer-0000-onnx", "transformer-0000-pt2"]
    builtin = configs["transformer-0000"]
    for fmt in ("pt2", "onnx"):
        config = configs[f"transformer-0000-{fmt}"]
        # the same network in another form: the same tensors, token ids and batch sizes (the
        # export's id range read from its embedding, the built-in one's from its vocabulary)
        unranged = tuple(dataclasses.replace(t, value_range=None) for t in config.inputs)
        assert (unranged, config.outputs) == (builtin.inputs, builtin.outputs)
        assert config.input_ranges == builtin.input_ranges == {"input_ids": (0, 49)}
        assert config.batch_sizes == builtin.batch_sizes
    assert (
        main(
            [
                "models",
                "import",
                str(root),
                str(out / "transformer-0000.onnx"),
                "--name",
                "again",
                "--max-batch-size",
                "2",
            ]
        )
        == 0
    )
    assert "batch sizes 1,2" in capsys.readouterr().out
    (root / "again" / "config.pbtxt").write_text(
        (root / "again" / "config.pbtxt").read_text() + "instance_group [ { count: 2 } ]\n"
    )
    assert main(["models", "list", str(root)]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^transformer-0000-pt2 +pt2 ", listed, re.M) and "again" in listed
    assert "note: again: field 'instance_group' (line" in listed


def test_import_refuses_torchscript_saying_how_to_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK junk")
    assert main(["models", "import", str(tmp_path / "repo"), str(path), "--name", "m"]) == 2
    err = capsys.readouterr().err
    assert "TorchScript and pickled files are not served" in err and "torch.export.save" in err
    assert not (tmp_path / "repo").exists()
