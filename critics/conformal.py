"""Split-conformal threshold for a score whose large values mean 'alarm'.

With n exchangeable in-distribution calibration scores, the threshold at the
ceil((n+1)(1-alpha))-th smallest score gives P(new in-distribution score > tau) <= alpha.
"""

from __future__ import annotations

import math

import torch


def conformal_threshold(scores: torch.Tensor, alpha: float) -> float:
    """tau such that the false-alarm rate on in-distribution data is at most alpha.

    If n is too small for the guarantee (ceil((n+1)(1-alpha)) > n), returns +inf:
    never alarm rather than pretend.
    """
    scores = scores.detach().flatten().double()
    n = scores.numel()
    if n == 0:
        raise ValueError("conformal calibration needs at least one score")
    k = math.ceil((n + 1) * (1.0 - alpha))
    if k > n:
        return math.inf
    return float(torch.sort(scores).values[k - 1])


def false_alarm_rate(scores: torch.Tensor, tau: float) -> float:
    """Fraction of scores strictly above tau."""
    return float((scores > tau).double().mean())
