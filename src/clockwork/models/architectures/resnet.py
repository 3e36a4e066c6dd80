"""ResNet-18 and ResNet-50 in plain PyTorch, laid out as torchvision's (same tensor names).

ResNet-50 is torchvision's "v1.5": the bottleneck's stride sits on its 3x3 convolution. At 1000
classes the models have 11,689,512 and 25,557,032 parameters, as torchvision's. (Clockwork's
reference numbers are for MXNet's ResNet50 v2, a pre-activation variant of the same size class.)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from clockwork.models.architectures.init import InitRules, init_module
from clockwork.models.architectures.spec import (
    ArchSpec,
    ModelIO,
    Params,
    param_int,
    require,
)
from clockwork.models.tensors import TensorSpec

_MIN_RESOLUTION = 16


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity: torch.Tensor = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    expansion: ClassVar[int] = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity: torch.Tensor = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(_conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))


class ResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        layers: list[nn.Module] = [block(self.inplanes, planes, stride)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        out: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return out


DEFAULT_IMAGE_PARAMS: dict[str, int] = {"num_classes": 1000, "resolution": 224}


def check_image_params(arch: str, params: Params) -> None:
    require(param_int(params, "num_classes") >= 1, arch, "num_classes must be >= 1")
    resolution = param_int(params, "resolution")
    require(
        resolution >= _MIN_RESOLUTION,
        arch,
        f"resolution must be >= {_MIN_RESOLUTION}, got {resolution}",
    )


def image_io(params: Params) -> ModelIO:
    """One RGB image (3, resolution, resolution) FP32 in, class logits FP32 out."""
    resolution = param_int(params, "resolution")
    return ModelIO(
        inputs=(TensorSpec("input", "FP32", (3, resolution, resolution)),),
        outputs=(TensorSpec("logits", "FP32", (param_int(params, "num_classes"),)),),
    )


_RESNET_RULES = InitRules()  # torchvision: Kaiming fan-out convolutions, torch default fc


def _init_resnet(module: nn.Module, generator: torch.Generator) -> None:
    init_module(module, generator, _RESNET_RULES)


RESNET18 = ArchSpec(
    name="resnet18",
    description="ResNet-18 (torchvision layout), 11.7M parameters at 1000 classes",
    default_params=DEFAULT_IMAGE_PARAMS,
    structure=lambda p: ResNet(BasicBlock, (2, 2, 2, 2), param_int(p, "num_classes")),
    io=image_io,
    init_weights=_init_resnet,
    check_params=lambda p: check_image_params("resnet18", p),
)

RESNET50 = ArchSpec(
    name="resnet50",
    description="ResNet-50 v1.5 (torchvision layout), 25.6M parameters at 1000 classes",
    default_params=DEFAULT_IMAGE_PARAMS,
    structure=lambda p: ResNet(Bottleneck, (3, 4, 6, 3), param_int(p, "num_classes")),
    io=image_io,
    init_weights=_init_resnet,
    check_params=lambda p: check_image_params("resnet50", p),
)
