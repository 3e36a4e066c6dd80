import pytest
import torch
from torch import nn

from clockwork.worker.backends.bound_module import BoundModule


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 4, bias=False)
        self.out = nn.Linear(4, 4, bias=False)
        self.out.weight = self.embed.weight  # tied: one tensor, two slots
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.norm(self.embed(x)))
        return out


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = Tied().eval()
    # a tied tensor is saved once (as safetensors does), under its first name
    return {
        k: torch.rand(v.shape, generator=g) if v.is_floating_point() else v.clone()
        for k, v in m.state_dict().items()
        if k != "out.weight"
    }


def test_runs_each_model_over_its_own_views_as_functional_call_does() -> None:
    with torch.device("meta"):
        skeleton = Tied().eval()
    a, b = _weights(1), _weights(2)
    names = set(a)
    runner = BoundModule(skeleton, names)
    x = torch.rand(3, 4)
    ref = Tied().eval()
    with torch.inference_mode():
        for w in (a, b, a):
            got = runner(w, x)
            want = torch.func.functional_call(ref, w, (x,))
            assert isinstance(got, torch.Tensor) and torch.equal(got, want)
    # the skeleton itself stays on meta: the runner is a copy
    assert next(skeleton.parameters()).device.type == "meta"


def test_a_tensor_without_weights_is_refused() -> None:
    with torch.device("meta"):
        skeleton = Tied()
    with pytest.raises(ValueError, match=r"norm\.running_mean"):
        BoundModule(skeleton, {"embed.weight", "norm.weight", "norm.bias"})
