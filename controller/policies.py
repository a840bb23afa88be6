"""The actor (tanh-Gaussian, SAC-style) and the behaviour prior (Gaussian mixture).

Both work on normalised observations and actions in [-1, 1]^A. All randomness comes
from an explicit torch.Generator so that a resumed run repeats the same samples.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from safecritic.critics.networks import MLP, EnsembleMLP

LOG_2PI = math.log(2.0 * math.pi)
HALF_LOG_2PI = 0.5 * LOG_2PI
# Log-std ranges: the actor's follows d3rlpy/CORL's clamp upper bound (2) with a floor
# that keeps log-probs finite; the prior's cap at 0.5 stops a component covering the box.
ACTOR_LOG_STD_MIN, ACTOR_LOG_STD_MAX = -5.0, 2.0
PRIOR_LOG_STD_MIN, PRIOR_LOG_STD_MAX = -5.0, 0.5


def _tanh_log_det(pre: torch.Tensor) -> torch.Tensor:
    """log |d tanh(x)/dx| = log(1 - tanh(x)^2), computed stably, summed over the last dim."""
    return (2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))).sum(-1)


class TanhGaussianActor(nn.Module):
    """a = tanh(mu(s) + sigma(s) * eps): the SAC policy head."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = MLP(obs_dim, hidden, 2 * act_dim)
        self.log_std_min, self.log_std_max = ACTOR_LOG_STD_MIN, ACTOR_LOG_STD_MAX  # attributes: TorchScript-visible

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log-std, [B, A] each."""
        return self.from_output(self.net(obs))

    @torch.jit.export
    def from_output(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std from the network's output [..., 2A] (also computed elsewhere: the gate's fused pass)."""
        mean, log_std = out.float().chunk(2, dim=-1)  # fp32 also under bf16 autocast
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    @torch.jit.export
    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action (what a deterministic controller executes)."""
        return torch.tanh(self.forward(obs)[0])

    def sample(self, obs: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n reparameterised samples per state: actions [n, B, A], log-probs [n, B]."""
        mean, log_std = self.forward(obs)
        return self.sample_from(mean, log_std, n, generator)

    @staticmethod
    def sample_from(mean: torch.Tensor, log_std: torch.Tensor, n: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample` from an already computed forward (callers that also need the mean)."""
        eps = torch.randn((n, *mean.shape), generator=generator)
        pre = mean + log_std.exp() * eps
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1) - _tanh_log_det(pre)
        return torch.tanh(pre), logp


class MixturePrior(nn.Module):
    """pi_beta(a|s): a K-component diagonal Gaussian mixture over the action box.

    A mixture because the data mixes behaviours (one reckless, one cautious, ...): a
    single Gaussian would put its mean between them, on actions nobody took. Means are
    squashed into the box; the density is over actions directly (no tanh Jacobian), so
    data actions on the box's edge (saturated commands) have finite likelihood.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], components: int) -> None:
        super().__init__()
        self.act_dim, self.components = act_dim, components
        self.net = MLP(obs_dim, hidden, components * (1 + 2 * act_dim))
        self.log_std_min, self.log_std_max = PRIOR_LOG_STD_MIN, PRIOR_LOG_STD_MAX
        self.half_log_2pi = HALF_LOG_2PI

    def params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture log-weights [..., K], means [..., K, A], log-stds [..., K, A]."""
        return self.params_from_output(self.net(obs))

    @torch.jit.export
    def params_from_output(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`params` from the network's output [..., K (1 + 2A)]."""
        out = out.float()
        k, a = self.components, self.act_dim
        logits = out[..., :k]
        shape = list(out.shape[:-1])
        shape.extend([k, 2 * a])
        mean, log_std = out[..., k:].reshape(shape).chunk(2, dim=-1)
        return F.log_softmax(logits, dim=-1), torch.tanh(mean), log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi_beta(act | obs); obs [B, D] broadcast against act [..., B, A] -> [..., B]."""
        log_w, mean, log_std = self.params(obs)
        return self.log_density(log_w, mean, log_std, act)

    @torch.jit.export
    def log_density(self, log_w: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi_beta(act | obs) from params(obs) computed once (the gate scores many actions)."""
        z = (act.unsqueeze(-2) - mean) / log_std.exp()
        comp = (-0.5 * z.pow(2) - log_std - self.half_log_2pi).sum(-1)  # [..., B, K]
        return torch.logsumexp(log_w + comp, dim=-1)

    @torch.jit.export
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The component mean with the highest mixture density: the BC baseline's action.

        Not the heaviest component: a broad component fitted to random actions can
        carry the most weight while its mean is an action nobody takes.
        """
        log_w, mean, log_std = self.params(obs)  # [B, K], [B, K, A], [B, K, A]
        z = (mean.unsqueeze(-2) - mean.unsqueeze(-3)) / log_std.exp().unsqueeze(-3)  # [B, K(at), K(comp), A]
        comp = (-0.5 * z.pow(2) - log_std.unsqueeze(-3) - self.half_log_2pi).sum(-1)
        density = torch.logsumexp(log_w.unsqueeze(-2) + comp, dim=-1)  # [B, K]
        best = density.argmax(dim=-1)  # [B]
        index = best.unsqueeze(-1).unsqueeze(-1).expand(best.shape[0], 1, self.act_dim)
        return torch.gather(mean, -2, index).squeeze(-2)

    @torch.jit.export
    def candidates(self, obs: torch.Tensor) -> torch.Tensor:
        """All component means [..., K, A] (the gate's prior candidates)."""
        return self.params(obs)[1]


def fused_policy_pass(*policies: nn.Module) -> EnsembleMLP | None:
    """The policies' MLPs (actor, priors: anything with an `.net` MLP) as one ensemble, one
    batched matmul per layer instead of one small one each (heads zero-padded to the widest
    output), or None when their shapes differ. For inference: at batch 1 the gate's cost is
    the number of ops."""
    layers = [[m for m in p.net.net if isinstance(m, nn.Linear)] for p in policies]
    first = layers[0]
    same_body = all(
        len(ls) == len(first)
        and all(a.in_features == b.in_features and a.out_features == b.out_features for a, b in zip(first[:-1], ls[:-1]))
        and ls[-1].in_features == first[-1].in_features
        for ls in layers
    )
    activations = {type(m) for p in policies for m in p.net.net if not isinstance(m, nn.Linear)}
    if not same_body or activations != {nn.ReLU}:
        return None
    width = max(ls[-1].out_features for ls in layers)
    fused = EnsembleMLP(len(policies), first[0].in_features, [m.out_features for m in first[:-1]], width)
    with torch.no_grad():
        for depth, target in enumerate([*fused.linears, fused.head]):
            target.weight.zero_()
            target.bias.zero_()
            for member, ls in enumerate(layers):
                layer = ls[depth]
                target.weight[member, :, : layer.out_features] = layer.weight.t()
                target.bias[member, 0, : layer.out_features] = layer.bias
    return fused.requires_grad_(False)
