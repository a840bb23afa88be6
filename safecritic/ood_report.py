"""`safecritic ood-report`: how well each detector separates held-out data from OOD pairs.

In-distribution: (s, a) pairs of the run's *test* episodes (neither trained nor
calibrated on). OOD sets: uniform actions, data actions perturbed at sigma x the action
range, a behaviour left out of the data, noisy states, and states from rollouts with
shifted dynamics. Each detector (the gate's score, its contrastive and prior-density
parts alone, Q-ensemble disagreement, Mahalanobis distance) is scored by AUROC
(positive class: OOD) and by its false-alarm and detection rates at its own
split-conformal threshold from the calibration episodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from safecritic.configs.errors import RunError
from safecritic.configs.fileio import atomic_write_text
from safecritic.configs.schema import Config, FaultsConfig
from safecritic.controller.model import SafeCriticModel
from safecritic.controller.training import calibration_pairs, load_trained, training_pairs
from safecritic.critics.baselines import Mahalanobis, q_disagreement
from safecritic.critics.conformal import conformal_threshold, false_alarm_rate
from safecritic.critics.metrics import auroc, fpr_at_tpr
from safecritic.envs.registry import make_behavior
from safecritic.envs.collect import collect_episodes
from safecritic.envs.dataset import load_offline_data
from safecritic.envs.registry import behaviors_for

SIGMAS = (0.05, 0.1, 0.2, 0.5)  # perturbation std as a fraction of the action range
STATE_NOISE = (0.3, 1.0)  # state noise std in units of each observation entry's data std
# Shifted dynamics: a lighter agent on a slicker floor (faster, overshooting).
SHIFT = FaultsConfig(mass_scale=0.5, damping_scale=0.3)
ROLLOUT_EPISODES = 40
ROLLOUT_SEED = 777
GATE_SCORE = "gate score"  # model.ood_score: contrastive + critics.ood.prior_weight x prior NLL


def _behaviour_pairs(env_id: str, names: list[str], faults: FaultsConfig | None, episodes: int, stride: int):
    """(obs, act) of scripted behaviours rolled out in env_id (raw units)."""
    from safecritic.envs.faults import make_env
    from safecritic.envs.rollout import run_episode

    obs, act = [], []
    env = make_env(env_id, faults)
    for k, name in enumerate(names):
        behavior = make_behavior(env_id, name)
        for i in range(episodes):
            behavior.reset(np.random.default_rng([ROLLOUT_SEED, k, i]))
            ep = run_episode(env, behavior.act, seed=ROLLOUT_SEED * 1000 + k * episodes + i)
            obs.append(ep.observations[:-1][::stride])
            act.append(ep.actions[::stride])
    env.close()
    return torch.from_numpy(np.concatenate(obs)), torch.from_numpy(np.concatenate(act))


def build_sets(config: Config, model: SafeCriticModel, data, stride: int) -> tuple[dict, dict[str, str]]:
    """{name: (obs_n, act_unit)} for ID (test episodes) and every OOD set; plus notes."""
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(0, len(data.test), stride)
    obs_raw, act_raw = data.test.obs[idx], data.test.act[idx]
    obs, act = model.normalize_obs(obs_raw), model.to_unit_action(act_raw)
    sets = {"in-distribution (test episodes)": (obs, act)}
    notes: dict[str, str] = {}
    sets["uniform actions"] = (obs, torch.rand(act.shape, generator=g) * 2 - 1)
    for sigma in SIGMAS:
        noise = torch.randn(act.shape, generator=g) * (2.0 * sigma)
        sets[f"perturbed actions sigma={sigma}"] = (obs, (act + noise).clamp(-1, 1))
    for k in STATE_NOISE:
        noisy = obs_raw + torch.randn(obs_raw.shape, generator=g) * k * data.stats.std
        sets[f"noisy states {k} std"] = (model.normalize_obs(noisy), act)
    used = set(config.data.behaviors or behaviors_for(config.env.id))  # empty: every behaviour was used
    left_out = [b for b in behaviors_for(config.env.id) if b not in used]
    if left_out:
        o, a = _behaviour_pairs(config.env.id, left_out[:1], None, ROLLOUT_EPISODES, stride)
        sets[f"left-out behaviour ({left_out[0]})"] = (model.normalize_obs(o), model.to_unit_action(a))
    else:
        notes["left-out behaviour"] = "every scripted behaviour is in the training mixture; set skipped"
    in_mixture = [b for b in behaviors_for(config.env.id) if b in used and b != "random"]
    if in_mixture:
        o, a = _behaviour_pairs(config.env.id, in_mixture, SHIFT, ROLLOUT_EPISODES // len(in_mixture), stride)
        sets[f"shifted dynamics (mass x{SHIFT.mass_scale}, damping x{SHIFT.damping_scale})"] = (
            model.normalize_obs(o), model.to_unit_action(a))
    return sets, notes


def ood_report(run_dir: Path, out_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    config, model, _ = load_trained(run_dir)
    data = load_offline_data(config.data)
    if len(data.test) == 0:
        raise RunError("the run's data has no test episodes (data.test_fraction = 0); the report needs held-out episodes")
    stride = config.critics.ood.calib_stride
    alpha = config.critics.ood.false_alarm_rate
    with torch.no_grad():
        sets, notes = build_sets(config, model, data, stride)
        maha = Mahalanobis(*training_pairs(model, data))
        # The gate's score, then its two parts alone, then the two baselines.
        methods: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
            GATE_SCORE: lambda o, a: model.ood_score(o, a),
            "contrastive only": lambda o, a: model.detector.score(o, a),
            "prior nll only": lambda o, a: -model.prior.log_prob(o, a),
            "q_disagreement": lambda o, a: q_disagreement(model.critic, o, a),
            "mahalanobis": lambda o, a: maha(o, a),
        }
        cal_obs, cal_act = calibration_pairs(model, data, stride)
        thresholds = {name: conformal_threshold(fn(cal_obs, cal_act), alpha) for name, fn in methods.items()}
        thresholds[GATE_SCORE] = float(model.ood_tau)  # the run's own, as the gate uses it
        id_name = next(iter(sets))
        scores = {name: {s: fn(*pairs) for s, pairs in sets.items()} for name, fn in methods.items()}
    rows: list[dict[str, Any]] = []
    for set_name in sets:
        for method in methods:
            ref, s = scores[method][id_name], scores[method][set_name]
            row = {"set": set_name, "method": method, "n": int(s.numel()), "threshold": thresholds[method],
                   "alarm_rate": false_alarm_rate(s, thresholds[method])}
            if set_name != id_name:
                row["auroc"] = auroc(ref, s)
                row["fpr_at_95tpr"] = fpr_at_tpr(ref.numpy(), s.numpy(), 0.95)
            rows.append(row)
    report = {"run_dir": str(run_dir), "alpha_fa": alpha, "stride": stride, "positive_class": "OOD",
              "ood_prior_scale": float(model.ood_prior_scale),
              "in_distribution": id_name, "rows": rows, "notes": notes}
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "ood_report"
    atomic_write_text(out_dir / "ood_report.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "ood_report.md", render_markdown(report))
    plot_auroc_vs_sigma(report, out_dir / "auroc_vs_sigma.png")
    return report


def render_markdown(report: dict[str, Any]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in report["rows"]))
    sets = list(dict.fromkeys(r["set"] for r in report["rows"]))
    by = {(r["set"], r["method"]): r for r in report["rows"]}
    head = "| set | n | " + " | ".join(f"{m} AUROC | {m} alarms" for m in methods) + " |"
    lines = [
        "# OOD detection report", "",
        f"Run: `{report['run_dir']}`. In-distribution: {report['in_distribution']}. Positive class: OOD. "
        f"Thresholds: split conformal on the calibration episodes at alpha_fa = {report['alpha_fa']} "
        f"(the gate score's is the run's own; gate score = contrastive + {report['ood_prior_scale']:.3g} x prior NLL). 'alarms' = fraction of the set above the threshold: "
        "the false-alarm rate on the in-distribution row, the detection rate elsewhere.", "",
        head, "|" + "---|" * (2 + 2 * len(methods)),
    ]
    for s in sets:
        cells = []
        for m in methods:
            r = by[(s, m)]
            cells += [f"{r['auroc']:.3f}" if "auroc" in r else "-", f"{r['alarm_rate']:.3f}"]
        lines.append(f"| {s} | {by[(s, methods[0])]['n']} | " + " | ".join(cells) + " |")
    for k, v in report["notes"].items():
        lines.append(f"\nNote ({k}): {v}")
    lines.append("\n![AUROC vs sigma](auroc_vs_sigma.png)\n")
    return "\n".join(lines) + "\n"


def plot_auroc_vs_sigma(report: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for method in dict.fromkeys(r["method"] for r in report["rows"]):
        ys = [next(r["auroc"] for r in report["rows"] if r["method"] == method and r["set"] == f"perturbed actions sigma={s}")
              for s in SIGMAS]
        ax.plot(SIGMAS, ys, marker="o", label=method)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xticks(SIGMAS, [str(s) for s in SIGMAS])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("perturbation std (fraction of the action range)")
    ax.set_ylabel("AUROC (OOD positive)")
    ax.set_ylim(0.4, 1.0)
    ax.set_title("Detecting perturbed actions at held-out states")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
