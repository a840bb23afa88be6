"""Building blocks: MLP, ensemble MLP with batched weights, observation normaliser.

An ensemble of E MLPs is computed with one `baddbmm` per layer ([E, B, in] x [E, in,
out]) instead of E separate matmuls: on CPU that is one large, well-shaped kernel
instead of many small ones, and the members can share one batch of inputs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _activation(name: str, inplace: bool = False) -> nn.Module:
    return {"relu": nn.ReLU(inplace=inplace), "silu": nn.SiLU(inplace=inplace), "tanh": nn.Tanh()}[name]


class MLP(nn.Module):
    """in -> hidden... -> out, with optional LayerNorm after each hidden linear layer."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False, activation: str = "relu"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(_activation(activation))
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: [E, B, in] -> [E, B, out]."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.members, self.in_dim, self.out_dim = members, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as nn.Linear's default init, member by member.
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class NarrowEnsembleLinear(nn.Module):
    """An EnsembleLinear for inference, its weight stored [E, out, in] and read through a
    transposed view: the same map, but for a narrow output (the critics' 1-2 wide heads)
    MKL's batched matmul takes a slow path on an [E, in, out] right operand and a fast one
    on this layout: 340 vs 85 µs at 900 rows x 192 -> 2, 6.6 vs 4.1 µs at 9 rows, one
    thread (docs/benchmarks.md, "Evaluation loop"). Wider layers gain nothing. Training
    keeps EnsembleLinear: checkpoints and their trajectories stay as they are."""

    def __init__(self, linear: EnsembleLinear) -> None:
        super().__init__()
        self.members, self.in_dim, self.out_dim = linear.members, linear.in_dim, linear.out_dim
        self.weight_t = nn.Parameter(linear.weight.detach().transpose(1, 2).contiguous(), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight_t.transpose(1, 2))


class EnsembleMLP(nn.Module):
    """E MLPs evaluated together. Input [B, in] (shared by all members) or [E, B, in]."""

    __jit_unused_properties__ = ["linears"]

    def __init__(
        self,
        members: int,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        layer_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.members = members
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers.append(EnsembleLinear(members, a, b))
            if layer_norm:
                layers.append(nn.LayerNorm(b, elementwise_affine=False))
            # In place: the linear layers' backward needs their inputs, not their outputs,
            # so the activation can overwrite them and skip one large allocation per layer.
            layers.append(_activation(activation, inplace=True))
        self.body = nn.Sequential(*layers)
        self.head = EnsembleLinear(members, dims[-1], out_dim)

    @property
    def linears(self) -> list[EnsembleLinear]:
        """The hidden layers' linear maps, in order (the head excluded)."""
        return [m for m in self.body if isinstance(m, EnsembleLinear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, x.shape[0], x.shape[1])
        return self.head(self.body(x))

    def use_inference_head(self) -> None:
        """Swap the head for its inference layout (NarrowEnsembleLinear), in place: for
        copies that are exported, never for a model that trains on."""
        if isinstance(self.head, EnsembleLinear):
            self.head = NarrowEnsembleLinear(self.head)

    def flops_per_row(self) -> int:
        """Multiply-adds x2 of one forward pass of one input row through all members."""
        macs = sum(l.in_dim * l.out_dim for l in self.linears) + self.head.in_dim * self.head.out_dim
        return 2 * self.members * macs


class Normalizer(nn.Module):
    """(x - mean) / std with the statistics stored as buffers (they travel with exports)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
