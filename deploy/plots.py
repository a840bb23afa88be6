"""The certification report's figures (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from safecritic.deploy.evaluate import trace_records


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    _plt().close(fig)
    tmp.replace(path)


def _short(env_id: str) -> str:
    return env_id.split("/")[-1]


def returns_and_costs(episodes: dict[str, list[dict]], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    for env_id, eps in episodes.items():
        axes[0].hist([e["ret"] for e in eps], bins=30, alpha=0.55, label=_short(env_id))
        costs = [e["cost"] for e in eps]
        top = max(2.0, float(np.max(costs)))
        axes[1].hist(costs, bins=np.linspace(-0.25, top + 0.25, 12), alpha=0.55, label=_short(env_id))
    axes[0].set(title="Episode return", xlabel="return", ylabel="episodes")
    axes[1].set(title="Episode cost", xlabel="cost (sum over the episode)", ylabel="episodes")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def accident_rates(rows: list[dict[str, Any]], limits: dict[str, float], path: Path) -> None:
    """rows: {label, env_id, rate, low, upper}; the criterion's limit per env as a red tick."""
    plt = _plt()
    envs = list(dict.fromkeys(r["env_id"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    width = 0.8 / max(len(envs), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels) + 2), 3.8), dpi=110)
    x = np.arange(len(labels))
    for j, env_id in enumerate(envs):
        rs = [next((r for r in rows if r["env_id"] == env_id and r["label"] == lab), None) for lab in labels]
        rate = np.array([r["rate"] if r else np.nan for r in rs])
        err = np.array([[r["rate"] - r["low"], r["upper"] - r["rate"]] if r else [0, 0] for r in rs]).T
        pos = x + (j - (len(envs) - 1) / 2) * width
        ax.bar(pos, rate, width, yerr=err, capsize=3, label=_short(env_id))
        if env_id in limits:
            ax.hlines(limits[env_id], pos[0] - width / 2, pos[0] + width / 2, colors="red", lw=2)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("accident rate")
    ax.set_title("Accident rate with one-sided 95% Clopper-Pearson bounds (red: release limit)")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def decisions_over_episode(trace: dict[str, list], thresholds: dict[str, float], title: str, path: Path) -> None:
    plt = _plt()
    rec = trace_records(trace)
    t = np.arange(len(rec))
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), dpi=110, sharex=True)
    axes[0].step(t, rec[:, 0], where="post")
    axes[0].set_yticks([0, 1, 2, 3], ["policy", "other", "fallback", "fault"])
    axes[0].set_title(title)
    axes[1].plot(t, rec[:, 4], label="proposal Q_C")
    axes[1].plot(t, rec[:, 2], label="chosen Q_C")
    axes[1].axhline(thresholds["cost"], color="red", ls="--", lw=1, label="cost threshold")
    axes[1].set_ylabel("Q_C")
    axes[1].legend(fontsize=8)
    axes[2].plot(t, rec[:, 5], label="proposal OOD score")
    axes[2].plot(t, rec[:, 3], label="chosen OOD score")
    axes[2].axhline(thresholds["ood"], color="red", ls="--", lw=1, label="OOD threshold")
    axes[2].set_ylabel("OOD score")
    axes[2].set_xlabel("step")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def grid_of_panels(items: list[Any], draw: Callable[[Any, Any], None], title: str, path: Path, cols: int = 4) -> None:
    """One small panel per item, `draw(ax, item)` filling it: a task's path plots (envs/task.py)."""
    plt = _plt()
    rows = int(np.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), dpi=100, squeeze=False)
    for ax, item in zip(axes.flat, items):
        draw(ax, item)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
