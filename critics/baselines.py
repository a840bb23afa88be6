"""OOD baselines the contrastive detector is compared with (REFERENCES.md)."""

from __future__ import annotations

import torch

from safecritic.critics.q_ensemble import QEnsemble


def q_disagreement(critic: QEnsemble, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Std across the task critic's members: free once the critics exist."""
    with torch.no_grad():
        q_task, _ = critic(obs, act)
    return q_task.std(dim=0)


class Mahalanobis:
    """Distance of the joint (s, a) vector from the training pairs' Gaussian fit."""

    def __init__(self, obs: torch.Tensor, act: torch.Tensor, ridge: float = 1e-4) -> None:
        x = torch.cat([obs, act], dim=-1).double()
        self.mean = x.mean(0)
        cov = torch.cov(x.T) + ridge * torch.eye(x.shape[1], dtype=torch.float64)
        self.precision = torch.linalg.inv(cov)

    def __call__(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        d = torch.cat([obs, act], dim=-1).double() - self.mean
        return torch.einsum("bi,ij,bj->b", d, self.precision, d).sqrt().float()
