"""A small transformer encoder classifier: token and position embeddings, pre-norm encoder
layers (self-attention and a GELU MLP), a final LayerNorm and a linear head on the first token.

Input: ``input_ids`` INT64 of shape (seq_len,); every id must be in ``[0, vocab_size)``. An id
out of range raises ``IndexError`` on CPU and a device-side assert on CUDA, so servers must check
ids before running the model. Output: ``logits`` FP32 of shape (num_classes,).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from clockwork.models.architectures.init import InitRules, init_module, linear_normal
from clockwork.models.architectures.spec import ArchSpec, ModelIO, Params, param_int, require
from clockwork.models.tensors import TensorSpec


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, ffn_dim)
        self.ff2 = nn.Linear(ffn_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        qkv = self.qkv(self.norm1(x))
        qkv = qkv.view(batch, seq, 3, self.num_heads, d_model // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_dim)
        attn = functional.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attn.transpose(1, 2).reshape(batch, seq, d_model))
        out: torch.Tensor = x + self.ff2(functional.gelu(self.ff1(self.norm2(x))))
        return out


class TransformerClassifier(nn.Module):
    def __init__(
        self,
        *,
        vocab_size: int,
        seq_len: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(seq_len, d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, ffn_dim) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.position_embedding.weight[:seq]
        for layer in self.layers:
            x = layer(x)
        out: torch.Tensor = self.head(self.norm(x)[:, 0])
        return out


def _check(params: Params) -> None:
    arch = "transformer"
    for key in (
        "vocab_size",
        "seq_len",
        "d_model",
        "num_layers",
        "num_heads",
        "ffn_dim",
        "num_classes",
    ):
        require(param_int(params, key) >= 1, arch, f"{key} must be >= 1")
    d_model, heads = param_int(params, "d_model"), param_int(params, "num_heads")
    require(d_model % heads == 0, arch, f"d_model {d_model} is not divisible by num_heads {heads}")


def _io(params: Params) -> ModelIO:
    return ModelIO(
        inputs=(TensorSpec("input_ids", "INT64", (param_int(params, "seq_len"),)),),
        outputs=(TensorSpec("logits", "FP32", (param_int(params, "num_classes"),)),),
    )


def _build(params: Params) -> nn.Module:
    return TransformerClassifier(
        vocab_size=param_int(params, "vocab_size"),
        seq_len=param_int(params, "seq_len"),
        d_model=param_int(params, "d_model"),
        num_layers=param_int(params, "num_layers"),
        num_heads=param_int(params, "num_heads"),
        ffn_dim=param_int(params, "ffn_dim"),
        num_classes=param_int(params, "num_classes"),
    )


_RULES = InitRules(linear=linear_normal(0.02), embedding_std=0.02)  # BERT-style


def _init(module: nn.Module, generator: torch.Generator) -> None:
    init_module(module, generator, _RULES)


TRANSFORMER = ArchSpec(
    name="transformer",
    description="small transformer encoder classifier over int64 token ids",
    default_params={
        "vocab_size": 8192,
        "seq_len": 128,
        "d_model": 256,
        "num_layers": 4,
        "num_heads": 4,
        "ffn_dim": 1024,
        "num_classes": 2,
    },
    structure=_build,
    io=_io,
    init_weights=_init,
    check_params=_check,
)
