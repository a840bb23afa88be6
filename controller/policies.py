"""Gaussian-mixture policies over the action box: the actor, the behaviour prior pi_beta and
the successful episodes' prior pi_ref share this one class and shape.

A mixture because the data mixes behaviours (one reckless, one cautious, ...): a single
Gaussian fitted to them puts its mean between the modes, on actions nobody took (round an
obstacle on the left or the right: straight into it). Means are squashed into [-1, 1]^A; the
density is over actions directly (no tanh Jacobian), so data actions on the box's edge
(saturated commands) have finite likelihood. A policy *acts* by its mode: the component
mean with the highest mixture density. All randomness comes from an explicit generator,
so a resumed run repeats the same samples.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from safecritic.critics.networks import MLP, EnsembleMLP

# The cap at 0.5 stops one component covering the whole box; the floor keeps densities finite.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 0.5


class MixtureParams(NamedTuple):
    """Log-weights [..., K], means [..., K, A], log-stds [..., K, A] at a set of states."""

    log_w: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor

    def select(self, index: torch.Tensor) -> "MixtureParams":
        return MixtureParams(self.log_w[index], self.mean[index], self.log_std[index])


def log_density(log_w: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """log pi(act | s) from a mixture's parameters; act [..., B, A] against params [B, ...] -> [..., B]."""
    z = (act.unsqueeze(-2) - mean) / log_std.exp()
    comp = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)  # [..., B, K]
    return torch.logsumexp(log_w + comp, dim=-1)


def mode_index(log_w: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """[B] the component whose mean has the highest mixture density: the mode among the means.

    Not the heaviest component: a broad component fitted to random actions can carry the
    most weight while its mean is an action nobody takes. The density is read with every
    std at least 0.1 (5% of the unit box's width): saturated commands pile up on the box's edge, a component
    collapses onto them, and its height alone would make it the mode however little weight it
    carries (measured on the shipped task: docs/design.md, "The actor")."""
    log_std = log_std.clamp_min(math.log(0.1))
    z = (mean.unsqueeze(-2) - mean.unsqueeze(-3)) / log_std.exp().unsqueeze(-3)  # [B, K(at), K(comp), A]
    comp = (-0.5 * z.pow(2) - log_std.unsqueeze(-3) - 0.5 * math.log(2.0 * math.pi)).sum(-1)
    return torch.logsumexp(log_w.unsqueeze(-2) + comp, dim=-1).argmax(dim=-1)


def pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values [B, K, A] at component index [B] -> [B, A]."""
    return torch.gather(values, 1, index.view(-1, 1, 1).expand(values.shape[0], 1, values.shape[2])).squeeze(1)


class MixturePolicy(nn.Module):
    """pi(a|s): a K-component diagonal Gaussian mixture on normalised observations."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], components: int) -> None:
        super().__init__()
        self.act_dim, self.components = act_dim, components
        self.net = MLP(obs_dim, hidden, components * (1 + 2 * act_dim))
        self.log_std_min, self.log_std_max = LOG_STD_MIN, LOG_STD_MAX  # attributes: TorchScript-visible

    @property
    def out_dim(self) -> int:
        return self.components * (1 + 2 * self.act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.params_from_output(self.net(obs))

    @torch.jit.ignore
    def params(self, obs: torch.Tensor) -> MixtureParams:
        return MixtureParams(*self.params_from_output(self.net(obs)))

    @torch.jit.export
    def params_from_output(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture's parameters from the network's output [..., K (1 + 2A)] (also computed
        elsewhere: the gate's fused pass of several policies)."""
        out = out.float()  # fp32 also under bf16 autocast
        k, a = self.components, self.act_dim
        shape = list(out.shape[:-1])
        shape.extend([k, 2 * a])
        mean, log_std = out[..., k:].reshape(shape).chunk(2, dim=-1)
        return F.log_softmax(out[..., :k], dim=-1), torch.tanh(mean), log_std.clamp(self.log_std_min, self.log_std_max)

    @torch.jit.ignore
    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(act | obs); obs [B, D] against act [..., B, A] -> [..., B]."""
        return log_density(*self.params(obs), act)

    @torch.jit.export
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The action the policy executes: its mode among the component means [B, A]."""
        log_w, mean, log_std = self.params_from_output(self.net(obs))
        return pick(mean, mode_index(log_w, mean, log_std))

    @staticmethod
    def sample(params: MixtureParams, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples per state, clipped to the box: actions [n, B, A], their log-densities [n, B]."""
        log_w, mean, log_std = params
        b, k, a = mean.shape
        component = torch.multinomial(log_w.exp(), n, replacement=True, generator=generator).t()  # [n, B]
        index = component.reshape(n, b, 1, 1).expand(n, b, 1, a)
        mu = torch.gather(mean.unsqueeze(0).expand(n, b, k, a), 2, index).squeeze(2)
        std = torch.gather(log_std.exp().unsqueeze(0).expand(n, b, k, a), 2, index).squeeze(2)
        act = (mu + std * torch.randn(mu.shape, generator=generator)).clamp(-1.0, 1.0)
        return act, log_density(log_w, mean, log_std, act)


def fused_policy_pass(*policies: MixturePolicy) -> EnsembleMLP | None:
    """The policies' MLPs as one ensemble, one batched matmul per layer instead of one small one
    each, or None when their shapes differ. For inference: at batch 1 the gate's cost is the
    number of ops."""
    if not all(isinstance(p, MixturePolicy) for p in policies):
        return None  # a learner's own policy (controller/learners/) runs its own forward
    layers = [[m for m in p.net.net if isinstance(m, nn.Linear)] for p in policies]
    first = layers[0]
    same = all(len(ls) == len(first) and all(a.in_features == b.in_features and a.out_features == b.out_features
                                             for a, b in zip(first, ls)) for ls in layers)
    activations = {type(m) for p in policies for m in p.net.net if not isinstance(m, nn.Linear)}
    if not same or activations != {nn.ReLU}:
        return None
    fused = EnsembleMLP(len(policies), first[0].in_features, [m.out_features for m in first[:-1]], first[-1].out_features)
    with torch.no_grad():
        for depth, target in enumerate([*fused.linears, fused.head]):
            for member, ls in enumerate(layers):
                target.weight[member] = ls[depth].weight.t()
                target.bias[member, 0] = ls[depth].bias
    return fused.requires_grad_(False)
