"""Contrastive detector of out-of-distribution (state, action) pairs.

f(s, a) is trained with two terms:

1. InfoNCE over actions at the same state: the data action must out-score uniform
   actions, Gaussian perturbations of itself at several scales, and other actions of
   the batch. This learns log p(a|s) / q(a) up to a per-state constant, so on its own
   it cannot flag an unfamiliar *state*.
2. Binary NCE with joint negatives (perturbed states, shuffled (s, a') pairs, uniform
   samples from a widened box) against the data pairs, which pins that per-state
   constant and makes OOD states score low too.

OOD score = -f(s, a); its alarm threshold comes from split conformal calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from safecritic.critics.networks import MLP


class OODDetector(nn.Module):
    """f(s, a) on normalised observations and actions in [-1, 1]^A; score = -f."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int], obs_low: torch.Tensor, obs_high: torch.Tensor
    ) -> None:
        super().__init__()
        self.f = MLP(obs_dim + act_dim, hidden, 1)
        # The data's box in normalised state space, for uniform joint negatives.
        self.register_buffer("obs_low", obs_low.detach().clone().float())
        self.register_buffer("obs_high", obs_high.detach().clone().float())

    def logit(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs [..., B, obs_dim] broadcast against act [..., B, act_dim] -> [..., B]."""
        shape = list(act.shape[:-1])
        shape.append(obs.shape[-1])
        return self.logit_of_pairs(torch.cat([obs.expand(shape), act], dim=-1))

    @torch.jit.export
    def logit_of_pairs(self, pairs: torch.Tensor) -> torch.Tensor:
        """f on (s, a) rows already concatenated [..., obs_dim + act_dim] -> [...]."""
        return self.f(pairs).float().squeeze(-1)

    def score(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """OOD score: higher means further from the data."""
        return -self.logit(obs, act)

    @torch.jit.export
    def score_of_pairs(self, pairs: torch.Tensor) -> torch.Tensor:
        """`score` on (s, a) rows already concatenated (the gate shares them with the critics)."""
        return -self.logit_of_pairs(pairs)


def with_prior_term(score: torch.Tensor, log_prior: torch.Tensor, scale: float) -> torch.Tensor:
    """The gate's OOD score: the contrastive score + scale x (-log pi_beta(a|s)), in one fused op.

    One definition for the model (calibration, curriculum, reports) and the exported gate,
    which passes the prior density it has already computed for its ranking.
    """
    return torch.add(score, log_prior, alpha=-scale)


@dataclass(frozen=True)
class DetectorLossConfig:
    """The contrastive terms' negatives. Fixed, not configured: no preset ever changed them."""

    uniform_negatives: int = 16  # uniform actions per state (Implicit BC uses uniform counter-examples)
    perturb_scales: Sequence[float] = (0.05, 0.1, 0.2, 0.5)  # std of data-action perturbations, fraction of the range
    perturb_negatives: int = 2  # perturbed actions per scale and state
    batch_negatives: int = 8  # other actions of the batch per state
    nce_weight: float = 1.0  # the binary NCE term (joint negatives; catches OOD states)
    state_noise: float = 0.5  # std of state perturbations for joint negatives, normalised units
    box_widen: float = 1.5  # uniform joint negatives come from the data's state box widened by this factor


def action_negatives(act: torch.Tensor, cfg: DetectorLossConfig, generator: torch.Generator) -> torch.Tensor:
    """Negative actions per state: uniform, perturbed data actions, other batch actions. [K, B, A]."""
    b, a_dim = act.shape
    parts = []
    if cfg.uniform_negatives:
        parts.append(torch.rand(cfg.uniform_negatives, b, a_dim, generator=generator) * 2.0 - 1.0)
    for scale in cfg.perturb_scales:
        if cfg.perturb_negatives:
            noise = torch.randn(cfg.perturb_negatives, b, a_dim, generator=generator) * (2.0 * scale)  # range = 2
            parts.append((act.unsqueeze(0) + noise).clamp(-1.0, 1.0))
    if cfg.batch_negatives:
        # Shift by 1..b-1 positions: never the row's own action.
        shifts = torch.randint(1, b, (cfg.batch_negatives,), generator=generator)
        parts.append(torch.stack([act.roll(int(s), dims=0) for s in shifts]))
    return torch.cat(parts, dim=0)


def detector_loss(
    det: OODDetector, obs: torch.Tensor, act: torch.Tensor, cfg: DetectorLossConfig, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """InfoNCE over actions + nce_weight * binary NCE on joint negatives. obs normalised."""
    negatives = action_negatives(act, cfg, generator)
    candidates = torch.cat([act.unsqueeze(0), negatives], dim=0)  # [1+K, B, A], data action first
    logits = det.logit(obs.unsqueeze(0), candidates)  # [1+K, B]
    infonce = F.cross_entropy(logits.T, torch.zeros(obs.shape[0], dtype=torch.long))

    loss, metrics = infonce, {"ood_infonce": infonce.detach()}
    if cfg.nce_weight > 0:
        b = obs.shape[0]
        noisy_states = obs + cfg.state_noise * torch.randn(obs.shape, generator=generator)
        centre, half = (det.obs_high + det.obs_low) / 2, (det.obs_high - det.obs_low) / 2
        box_states = centre + cfg.box_widen * half * (torch.rand(obs.shape, generator=generator) * 2 - 1)
        box_actions = torch.rand(act.shape, generator=generator) * 2 - 1
        joint = det.logit(torch.stack([noisy_states, box_states]), torch.stack([act, box_actions]))  # [2, B]
        positives = logits[0]
        # The shuffled (s, a') pairs were scored above already: the last batch_negatives rows.
        shuffled = logits[logits.shape[0] - cfg.batch_negatives :] if cfg.batch_negatives else logits[:0]
        negative_logits = torch.cat([joint.reshape(-1), shuffled.reshape(-1)])
        nce = F.binary_cross_entropy_with_logits(positives, torch.ones(b)) + F.binary_cross_entropy_with_logits(
            negative_logits, torch.zeros_like(negative_logits)
        )
        loss = loss + cfg.nce_weight * nce
        metrics["ood_nce"] = nce.detach()
    metrics["ood_top1"] = (logits.detach().argmax(dim=0) == 0).float().mean()
    return loss, metrics
