"""The demo repository of ``clockwork serve``: made in the fastest form on its device."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from clockwork.cli import demo_repository as demo
from clockwork.cli import demo_state
from clockwork.core.errors import InvalidInputError
from clockwork.models.formats import ModelFormat
from clockwork.models.repository import ModelRepository
from clockwork.worker.backends.torch_backend import TorchBackend
from clockwork.worker.profiler import profile_repository

BUILTIN, ONNX, PT2 = ModelFormat.BUILTIN, ModelFormat.ONNX, ModelFormat.TORCH_EXPORT


@pytest.fixture(autouse=True)
def _small(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo network at 32x32 and fewer timed rounds: the same steps, in seconds."""
    monkeypatch.setattr(demo, "DEMO_RESOLUTION", 32)
    monkeypatch.setattr(demo, "TIMED_ROUNDS", 5)


def formats(root: Path) -> dict[str, ModelFormat]:
    return {name: c.format for name, c in ModelRepository(root).scan().items()}


def test_forms_parse_and_the_builtin_form_is_always_a_candidate() -> None:
    assert demo.parse_forms("onnx") == (BUILTIN, ONNX)
    assert demo.parse_forms("pt2, builtin") == (BUILTIN, PT2)
    with pytest.raises(InvalidInputError, match="format must be one of"):
        demo.parse_forms("onnx,tensorrt")


def test_builtin_only_makes_the_builtin_models_and_then_nothing(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    choice = demo.ensure_demo_repository(root, "cpu", forms=(BUILTIN,))
    assert choice is not None and choice.chosen is BUILTIN and choice.median_ms == {}
    assert "only the built-in form was asked for" in choice.describe()
    assert formats(root) == {n: BUILTIN for n in demo.model_names()}
    assert not list((root / demo_state.FORMS_DIR).glob("*.onnx"))  # nothing exported
    assert demo_state.read_choice(root) == choice.to_json()
    # made already, for this kind of device: left as it is
    assert demo.ensure_demo_repository(root, "cpu", forms=(BUILTIN, ONNX)) is None
    assert formats(root) == {n: BUILTIN for n in demo.model_names()}


def test_the_fastest_form_is_served_and_answers_as_the_builtin_one(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    choice = demo.ensure_demo_repository(root, "cpu", forms=(BUILTIN, ONNX))
    assert choice is not None and set(choice.median_ms) == {"builtin", "onnx"}
    assert choice.clock == "thread CPU time" and all(ms > 0 for ms in choice.median_ms.values())
    fastest = min(choice.median_ms, key=lambda f: choice.median_ms[f])
    assert choice.chosen.value == fastest
    assert formats(root) == {n: choice.chosen for n in demo.model_names()}
    assert (
        json.loads((root / demo_state.FORMS_DIR / demo_state.CHOICE_FILE).read_text())["chosen"]
        == fastest
    )
    assert (root / demo_state.FORMS_DIR / "mobilenet_v2-32-seed1.onnx").is_file()

    # the four share one file (or one architecture): measured once at first start
    written = profile_repository(ModelRepository(root), "cpu", runs=2, warmup=0, loads=1)
    first, *others = demo.model_names()
    assert sorted(written) == [first, *others]
    assert all(f"measured on {first}" in written[n][0].measured.how for n in others)

    # the served models compute what the built-in network does
    ref_root = tmp_path / "ref"
    demo._write_builtin(ref_root)
    image = np.random.default_rng(3).standard_normal((3, 32, 32), dtype=np.float32)
    outputs: list[np.ndarray] = []
    for where in (root, ref_root):
        name = demo.model_names()[2]
        backend = TorchBackend(ModelRepository(where), "cpu", models=[name])
        backend.load(name)
        (out,) = backend.infer(name, 1, [{"input": image}]).outputs
        outputs.append(np.asarray(out["logits"], dtype=np.float32))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)


def test_another_device_kind_chooses_again(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    demo.ensure_demo_repository(root, "cpu", forms=(BUILTIN,))
    path = root / demo_state.FORMS_DIR / demo_state.CHOICE_FILE
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, "device_kind": "NVIDIA H100 80GB HBM3"}))
    choice = demo.ensure_demo_repository(root, "cpu", forms=(BUILTIN, ONNX))
    assert choice is not None and choice.device_kind == "cpu"
    assert set(choice.median_ms) == {"builtin", "onnx"}
    assert formats(root) == {n: choice.chosen for n in demo.model_names()}


def test_without_onnx_runtime_the_builtin_form_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    root = tmp_path / "demo"
    choice = demo.ensure_demo_repository(root, "cpu")
    assert choice is not None and choice.chosen is BUILTIN
    assert "onnxruntime is not installed" in choice.skipped["onnx"]
    assert "nothing else tried: onnx: onnxruntime is not installed" in choice.describe()
    assert formats(root) == {n: BUILTIN for n in demo.model_names()}


def test_a_form_that_fails_to_run_leaves_the_builtin_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no session for you")

    monkeypatch.setattr(demo, "_time_forms", broken)
    choice = demo.ensure_demo_repository(tmp_path / "demo", "cpu")
    assert choice is not None and choice.chosen is BUILTIN
    assert choice.skipped == {"onnx": "timing failed: no session for you"}
    assert formats(tmp_path / "demo") == {n: BUILTIN for n in demo.model_names()}


def test_a_ready_cpu_demo_repository_is_known_without_torch(tmp_path: Path) -> None:
    """serve's controller process asks on every start; torch would cost it ~190 MB."""
    import subprocess
    import sys

    root = tmp_path / "demo"
    (root / "m").mkdir(parents=True)
    (root / "m" / "config.json").write_text("{}")
    (root / demo_state.FORMS_DIR).mkdir()
    (root / demo_state.FORMS_DIR / demo_state.CHOICE_FILE).write_text(
        json.dumps({"device_kind": "cpu", "chosen": "onnx"})
    )
    code = (
        "import sys; from pathlib import Path; "
        "from clockwork.cli.serve_cmd import ensure_demo_repository; "
        f"ensure_demo_repository(Path({str(root)!r}), 'cpu'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    assert demo_state.ready_without_torch(root, "cpu")
    assert not demo_state.ready_without_torch(tmp_path / "none", "cpu")
    assert not demo_state.ready_without_torch(root, "cuda:0")  # torch must say what that is
