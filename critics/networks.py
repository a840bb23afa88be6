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


class _NarrowHeadFunction(torch.autograd.Function):
    """bias + h @ weight for a narrow ensemble head ([E, N, in] x [E, in, O], O = 1 or 2: the
    critics' heads), with a backward that avoids slow MKL paths of autograd's own: the weight
    gradient as [E, in, N] x [E, N, O] (here [E, O, N] x [E, N, in], the same sums in another
    layout) and, for O = 1, the input gradient as a K=1 batched matmul (here an exact broadcast
    product). Forward + backward of plain CQL's head at d3rlpy's sizes (2 x 7 936 rows x 256 ->
    1), 2 threads: 13.1 -> 5.3 ms in fp32, 2.7 -> 2.4 ms in bf16; the default's (2 x 3 328 x 192
    -> 2): 3.3 -> 2.3 / 0.84 -> 0.63 ms (docs/benchmarks.md). The same bits as autograd's
    backward in every test we ran (tests/test_networks.py), so training runs are unchanged."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.bfloat16)  # as autocast casts baddbmm
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        return torch.baddbmm(bias, h, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        h, weight = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            w_t = weight.transpose(1, 2)
            grad_h = grad * w_t if weight.shape[2] == 1 else torch.bmm(grad, w_t)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad.transpose(1, 2), h).transpose(1, 2)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(1, keepdim=True)
        return grad_h, grad_w, grad_b


class NarrowEnsembleHead(EnsembleLinear):
    """An EnsembleLinear with a 1-2 wide output (the critics' heads) that trains through
    `_NarrowHeadFunction`'s backward: the same parameters (checkpoints load either way), the
    same values. Scripted or without gradients it is a plain baddbmm."""

    max_out = 3  # measured for 1 and 2 (docs/benchmarks.md) and 3 (the three heads); wider layers keep autograd's backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _NarrowHeadFunction.apply(x, self.weight, self.bias)
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
        narrow = out_dim <= NarrowEnsembleHead.max_out
        self.head = (NarrowEnsembleHead if narrow else EnsembleLinear)(members, dims[-1], out_dim)

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
