from __future__ import annotations

from typing import Any

import pytest
import torch

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures import ARCHITECTURES, build_model, get_architecture
from clockwork.models.tensors import TensorSpec


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("arch", "expected"),
    [("resnet18", 11_689_512), ("resnet50", 25_557_032), ("mobilenet_v2", 3_504_872)],
)
def test_parameter_counts_match_torchvision(arch: str, expected: int) -> None:
    skeleton = get_architecture(arch).build_skeleton({"num_classes": 1000})
    assert _count(skeleton) == expected


def test_state_dict_names_follow_torchvision() -> None:
    r50 = get_architecture("resnet50").build_skeleton().state_dict()
    assert {
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer4.2.conv3.weight",
        "fc.bias",
    } <= set(r50)
    assert r50["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: stride on the 3x3
    mb = get_architecture("mobilenet_v2").build_skeleton().state_dict()
    assert {
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.18.1.bias",
        "classifier.1.weight",
    } <= set(mb)


def test_resnet18_forward_at_32() -> None:
    model = build_model("resnet18", {"resolution": 32}, seed=3)
    assert not model.training
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["resnet50", "mobilenet_v2", "transformer"])
def test_forward_shapes_match_io_specs(arch: str, tiny_params: dict[str, dict[str, Any]]) -> None:
    params = tiny_params[arch]
    spec = get_architecture(arch)
    io = spec.model_io(params)
    model = spec.build(params, seed=0)
    (inp,) = io.inputs
    (out_spec,) = io.outputs
    if inp.dtype == "INT64":
        x = torch.randint(0, params["vocab_size"], (3, *inp.shape))
    else:
        x = torch.randn(3, *inp.shape)
    assert x.dtype == inp.torch_dtype
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, *out_spec.shape)
    assert y.dtype == out_spec.torch_dtype
    assert torch.isfinite(y).all()


def test_io_specs() -> None:
    io = get_architecture("resnet50").model_io({"resolution": 64})
    assert io.inputs == (TensorSpec("input", "FP32", (3, 64, 64)),)
    assert io.outputs == (TensorSpec("logits", "FP32", (1000,)),)
    assert io.inputs[0].nbytes == 3 * 64 * 64 * 4
    tio = get_architecture("transformer").model_io({"seq_len": 16, "num_classes": 5})
    assert tio.inputs == (TensorSpec("input_ids", "INT64", (16,)),)
    assert tio.outputs == (TensorSpec("logits", "FP32", (5,)),)
    assert get_architecture("resnet50").model_io().inputs[0].nbytes == 602_112


@pytest.mark.parametrize("arch", ["transformer", "mobilenet_v2"])
def test_seeded_weights_are_bit_identical(
    arch: str, tiny_params: dict[str, dict[str, Any]]
) -> None:
    params = tiny_params[arch]
    spec = get_architecture(arch)
    torch.manual_seed(123)
    a = spec.build(params, seed=5).state_dict()
    torch.manual_seed(456)  # the global RNG plays no part
    b = spec.build(params, seed=5).state_dict()
    c = spec.build(params, seed=6).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].dtype.is_floating_point]
    assert any(not torch.equal(a[k], c[k]) for k in weights)


def test_build_leaves_global_rng_alone(tiny_params: dict[str, dict[str, Any]]) -> None:
    before = torch.get_rng_state()
    build_model("transformer", tiny_params["transformer"], seed=1)
    assert torch.equal(before, torch.get_rng_state())


def test_batchnorm_buffers_are_initialised(tiny_params: dict[str, dict[str, Any]]) -> None:
    sd = build_model("mobilenet_v2", tiny_params["mobilenet_v2"], seed=0).state_dict()
    assert torch.equal(
        sd["features.0.1.running_var"], torch.ones_like(sd["features.0.1.running_var"])
    )
    assert int(sd["features.0.1.num_batches_tracked"]) == 0


def test_registry_names() -> None:
    assert set(ARCHITECTURES) == {"resnet18", "resnet50", "mobilenet_v2", "transformer"}
    for name, spec in ARCHITECTURES.items():
        assert spec.name == name
    with pytest.raises(InvalidInputError, match="unknown architecture 'vgg'"):
        get_architecture("vgg")


@pytest.mark.parametrize(
    ("arch", "params", "match"),
    [
        ("resnet50", {"depth": 3}, "no parameter 'depth'"),
        ("resnet50", {"resolution": "224"}, "must be of type int"),
        ("resnet50", {"resolution": True}, "must be of type int"),
        ("resnet50", {"resolution": 8}, "resolution must be >= 16"),
        ("resnet50", {"num_classes": 0}, "num_classes must be >= 1"),
        ("mobilenet_v2", {"width_mult": 0.0}, "width_mult"),
        ("transformer", {"d_model": 30, "num_heads": 4}, "not divisible"),
        ("transformer", {"num_layers": 0}, "num_layers must be >= 1"),
    ],
)
def test_bad_params_are_refused(arch: str, params: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        get_architecture(arch).resolve_params(params)


def test_int_accepted_for_float_param() -> None:
    params = get_architecture("mobilenet_v2").resolve_params({"width_mult": 1})
    assert params["width_mult"] == 1.0
    assert isinstance(params["width_mult"], float)


def test_default_params_are_read_only() -> None:
    spec = get_architecture("resnet50")
    with pytest.raises(TypeError):
        spec.default_params["resolution"] = 1  # type: ignore[index]
