"""Ranking metrics for detectors and risk scores."""

from __future__ import annotations

import numpy as np
import torch


def auroc(negatives: torch.Tensor | np.ndarray, positives: torch.Tensor | np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U).

    For OOD detection the positives are the OOD samples and the score is the OOD score.
    """
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    scores = np.concatenate([neg, pos])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based, ties share their mean rank
    rank_sum_pos = average_rank[inverse][neg.size :].sum()
    u = rank_sum_pos - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def fpr_at_tpr(negatives: np.ndarray, positives: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of negatives above the threshold that flags `tpr` of the positives."""
    pos = np.sort(np.asarray(positives, dtype=np.float64).ravel())
    threshold = pos[int(np.floor((1.0 - tpr) * pos.size))]
    return float((np.asarray(negatives, dtype=np.float64) >= threshold).mean())
