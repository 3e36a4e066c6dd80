"""Small networks of one's own, made in the test, and their .pt2 and .onnx exports."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

# (input name, shape without the batch, dtype) of each network
MLP_INPUT = ("features", (16,), torch.float32)
CONV_INPUT = ("image", (3, 16, 16), torch.float32)
ENCODER_INPUT = ("tokens", (8,), torch.int64)
VOCAB = 50


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(features)
        return out


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(image)
        return out


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.pos = nn.Parameter(torch.randn(8, 16) * 0.1)
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos
        out: torch.Tensor = self.head(self.layer(x).mean(dim=1))
        return out


NETS: dict[str, tuple[type[nn.Module], tuple[str, tuple[int, ...], torch.dtype]]] = {
    "mlp": (Mlp, MLP_INPUT),
    "conv": (ConvNet, CONV_INPUT),
    "encoder": (Encoder, ENCODER_INPUT),
}


def make_net(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cls, _ = NETS[kind]
    net = cls()
    # trained-looking batch-norm statistics, not the identity
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def example(kind: str, batch: int, seed: int = 0) -> torch.Tensor:
    _, (_, shape, dtype) = NETS[kind]
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.int64:
        return torch.randint(0, VOCAB, (batch, *shape), generator=g)
    return torch.randn((batch, *shape), generator=g)


def export_pt2(kind: str, net: nn.Module, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(net, (example(kind, 2),), dynamic_shapes=({0: batch},))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def export_onnx(kind: str, net: nn.Module, path: Path) -> Path:
    _, (name, _, _) = NETS[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns it is deprecated
        torch.onnx.export(
            net,
            (example(kind, 2),),
            str(path),
            dynamo=False,
            input_names=[name],
            output_names=["scores"],
            dynamic_axes={name: {0: "batch"}, "scores": {0: "batch"}},
        )
    return path


def export_both(kind: str, root: Path) -> dict[str, Path]:
    """The ``kind`` network (``make_net``) as ``ROOT/KIND.pt2`` and ``ROOT/KIND.onnx``, by form."""
    net = make_net(kind)
    return {
        "pt2": export_pt2(kind, net, root / f"{kind}.pt2"),
        "onnx": export_onnx(kind, net, root / f"{kind}.onnx"),
    }
