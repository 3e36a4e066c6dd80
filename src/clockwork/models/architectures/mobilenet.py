"""MobileNetV2 in plain PyTorch, laid out as torchvision's (same tensor names).

At 1000 classes and width 1.0 it has 3,504,872 parameters, as torchvision's.
"""

from __future__ import annotations

import torch
from torch import nn

from clockwork.models.architectures.init import InitRules, init_module, linear_normal
from clockwork.models.architectures.resnet import check_image_params, image_io
from clockwork.models.architectures.spec import ArchSpec, Params, param_float, param_int, require

# (expansion t, output channels c, repeats n, first stride s), from the paper and torchvision.
_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without going more than 10% down."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNReLU6(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with BatchNorm and ReLU6 (indices 0, 1, 2)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel_size=1))
        layers.extend(
            [
                ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, width_mult: float = 1.0) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult)
        last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, input_channel, stride=2)]
        for t, c, n, s in _SETTING:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        out: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return out


def _check(params: Params) -> None:
    check_image_params("mobilenet_v2", params)
    width = param_float(params, "width_mult")
    require(0.0 < width <= 4.0, "mobilenet_v2", f"width_mult must be in (0, 4], got {width}")


_RULES = InitRules(linear=linear_normal(0.01))  # torchvision's MobileNetV2 head


def _init(module: nn.Module, generator: torch.Generator) -> None:
    init_module(module, generator, _RULES)


MOBILENET_V2 = ArchSpec(
    name="mobilenet_v2",
    description="MobileNetV2 (torchvision layout), 3.5M parameters at 1000 classes, width 1.0",
    default_params={"num_classes": 1000, "resolution": 224, "width_mult": 1.0},
    structure=lambda p: MobileNetV2(param_int(p, "num_classes"), param_float(p, "width_mult")),
    io=image_io,
    init_weights=_init,
    check_params=_check,
)
