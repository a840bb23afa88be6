"""One table of every task: each row one controller on one engine, on the certification's episodes.

    python bench/suite.py runs/pointnav runs/hopper_velocity runs/panda_reach \\
        --out runs/bench/suite.json --markdown runs/bench/suite.md --plot docs/img/suite.png

For each `safecritic run` folder: the gated controller and its ablations (the actor alone, the
unconstrained actor, BC, BC on the successful episodes) as `safecritic run` evaluated them
(their evaluation.json), and the task's scripted behaviours rolled out on the same episodes
(deploy.seed, deploy.episodes, the same faults). `--plain-cql RUN=POLICY.pt` adds a
TorchScript policy (bench/plain_cql.py's or d3rlpy's, as saved by bench/vs_d3rlpy.py) on the
same episodes; `--plain-cql-updates N` trains one here instead (bench/plain_cql.py: CQL(H) with a SAC
actor at d3rlpy's hyperparameters, on the run's training split, N updates).

Per row: mean return and DSRL's normalised reward (R - R_min) / (R_max - R_min), with R_min and
R_max the lowest and highest episode return in the run's training data. Then success, the
accident rate with its 95% Clopper-Pearson interval, and, where the criteria hold an episode cost
budget, DSRL's normalised cost (mean episode cost / budget, safe when <= 1) with a 95% bootstrap
interval. A row is **safe** when it meets the engine's accident and cost criteria. The plot
draws reward against accidents or cost per task, with the safe region shaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, scripted_policy, write_json  # noqa: E402

from safecritic.configs import load_config  # noqa: E402
from safecritic.configs.schema import Config, CriteriaConfig  # noqa: E402
from safecritic.controller.evaluation import rollout_policy  # noqa: E402
from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes  # noqa: E402
from safecritic.deploy.certify import clopper_pearson  # noqa: E402
from safecritic.envs.dataset import episode_sums, load_offline_data  # noqa: E402
from safecritic.envs.registry import behaviors_for, import_modules  # noqa: E402

VARIANTS = {"gated": "artifact", "gate_off": "ablations/gate_off", "unconstrained": "ablations/unconstrained",
            "bc": "ablations/bc", "bc_successful": "ablations/bc_successful"}
BOOTSTRAP = 2000


def dataset_return_range(config: Config) -> tuple[float, float]:
    """(R_min, R_max): the training split's lowest and highest episode return (DSRL's normaliser)."""
    data = load_offline_data(config.data)
    returns, _ = episode_sums(data.train, data.train.rew)
    return float(returns.min()), float(returns.max())


def cost_interval(costs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean episode cost."""
    rng = np.random.default_rng(seed)
    means = costs[rng.integers(0, len(costs), (BOOTSTRAP, len(costs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def row(task: str, env_id: str, controller: str, episodes: list[dict[str, Any]], criteria: CriteriaConfig,
        r_range: tuple[float, float]) -> dict[str, Any]:
    """The suite's figures of one controller on one engine, from per-episode records."""
    rets = np.array([e["ret"] for e in episodes], dtype=float)
    costs = np.array([e["cost"] for e in episodes], dtype=float)
    accidents = int(sum(bool(e["accident"]) for e in episodes))
    low, high = clopper_pearson(accidents, len(episodes))
    r_min, r_max = r_range
    out = {"task": task, "env": env_id, "controller": controller, "episodes": len(episodes),
           "mean_return": float(rets.mean()), "normalized_reward": float((rets.mean() - r_min) / max(r_max - r_min, 1e-9)),
           "success_rate": float(np.mean([bool(e["success"]) for e in episodes])),
           "accident_rate": accidents / len(episodes), "accident_low": low, "accident_upper": high,
           "mean_cost": float(costs.mean())}
    safe = high <= criteria.accident_rate_upper
    if criteria.cost_budget is not None:
        c_low, c_high = cost_interval(costs)
        out |= {"normalized_cost": float(costs.mean() / criteria.cost_budget),
                "normalized_cost_interval": [c_low / criteria.cost_budget, c_high / criteria.cost_budget]}
        safe = safe and out["normalized_cost"] <= 1.0
    out["safe"] = bool(safe)
    return out


def train_plain_cql(config: Config, updates: int):
    """Plain CQL trained on the run's data: its deterministic policy, with the controller interface."""
    from tqdm import tqdm

    from plain_cql import PlainCQL

    learner = PlainCQL(load_offline_data(config.data), precision=config.run.precision)
    step = learner.update_step()
    for _ in tqdm(range(updates), desc=f"plain CQL ({config.run.name})", mininterval=5):
        step()
    return learner.policy()  # (actions, record), as rollout_policy calls it


def run_rows(run_dir: Path, plain_cql: Path | None, plain_cql_updates: int) -> list[dict[str, Any]]:
    config = load_config(run_dir / "config.yaml")
    import_modules(config.env.imports)
    d, task = config.deploy, config.run.name
    r_range = dataset_return_range(config)
    cql = scripted_policy(plain_cql) if plain_cql is not None else (
        train_plain_cql(config, plain_cql_updates) if plain_cql_updates else None)
    evaluations = {}
    for name, sub in VARIANTS.items():
        path = run_dir / sub / "evaluation.json"
        if path.is_file():
            evaluations[name] = json.loads(path.read_text())["envs"]
    if "gated" not in evaluations:
        sys.exit(f"error: {run_dir} has no evaluated artifact; run `safecritic run -c CONFIG` first")
    rows = []
    for env_id in config.env.eval_ids:
        criteria = d.criteria[env_id]
        for name in behaviors_for(env_id):
            runs = behavior_runs_on_evaluation_episodes(env_id, name, d.episodes, d.seed, config.env.faults)
            eps = [{"ret": e.ret, "cost": e.cost, "accident": e.accident, "success": e.success} for e in runs]
            rows.append(row(task, env_id, f"behaviour {name}", eps, criteria, r_range))
        if cql is not None:
            runs = rollout_policy(cql, env_id, d.episodes, d.seed, config.env.faults)
            eps = [{"ret": e.ret, "cost": e.cost, "accident": e.accident, "success": e.success} for e in runs]
            rows.append(row(task, env_id, "plain CQL", eps, criteria, r_range))
        for name, envs in evaluations.items():
            rows.append(row(task, env_id, name, envs[env_id]["episodes"], criteria, r_range))
        print(f"{task} {env_id}: {len(rows)} rows", flush=True)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Normalised reward against accidents (or normalised cost) per task; the safe region shaded.
    One colour per controller, one marker per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    controllers = list(dict.fromkeys(r["controller"] for r in rows))
    colour = {c: plt.cm.tab20(i % 20) for i, c in enumerate(controllers)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks) + 2.2, 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        engines = list(dict.fromkeys(r["env"] for r in mine))
        by_cost = "normalized_cost" in mine[0]
        bound = 1.0 if by_cost else max(r["bar"] for r in mine)
        ax.axvspan(0.0, bound, color="tab:green", alpha=0.12)
        for r in mine:
            x = r["normalized_cost"] if by_cost else r["accident_upper"]
            ax.scatter(x, r["normalized_reward"], color=colour[r["controller"]], s=40, edgecolor="k", linewidth=0.4,
                       marker="oDsv^"[engines.index(r["env"]) % 5])
        ax.set_xlabel("normalised cost (cost / budget)" if by_cost else "accident rate, 95% upper bound")
        ax.set_title(f"{task} (" + ", ".join(f"{'oDsv^'[i]} {e.split('/')[-1]}" for i, e in enumerate(engines)) + ")",
                     fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("normalised reward (safe region shaded)")
    handles = [Line2D([], [], marker="o", linestyle="", color=colour[c], label=c) for c in controllers]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / (4.6 * len(tasks) + 2.2), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="`safecritic run` folders, one per preset")
    parser.add_argument("--plain-cql", action="append", default=[], metavar="RUN=POLICY.pt",
                        help="a TorchScript policy to roll out for that run's task (repeatable)")
    parser.add_argument("--plain-cql-updates", type=int, default=0, metavar="N",
                        help="train plain CQL for N updates on each run's data where no --plain-cql file is given")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/suite.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--plot", type=Path, default=None, help="also draw reward against cost per task")
    args = parser.parse_args()
    extra = {}
    for item in args.plain_cql:
        run, sep, policy = item.partition("=")
        if not sep or not Path(policy).is_file():
            sys.exit(f"error: --plain-cql {item!r}: expected RUN_DIR=POLICY.pt with an existing policy file")
        extra[Path(run).resolve()] = Path(policy)
    rows = []
    for run_dir in args.run_dirs:
        config = load_config(run_dir / "config.yaml")
        bars = {e: c.accident_rate_upper for e, c in config.deploy.criteria.items()}
        for r in run_rows(run_dir, extra.get(run_dir.resolve()), args.plain_cql_updates):
            rows.append(r | {"bar": bars[r["env"]]})
    write_json(args.out, {"machine": machine(), "runs": [str(p) for p in args.run_dirs], "rows": rows})
    table = []
    for r in rows:
        cost = "" if "normalized_cost" not in r else (
            f"{r['normalized_cost']:.2f} [{r['normalized_cost_interval'][0]:.2f}, {r['normalized_cost_interval'][1]:.2f}]")
        table.append([r["task"], r["env"].split("/")[-1], r["controller"], f"{r['mean_return']:.2f}",
                      f"{r['normalized_reward']:.3f}", f"{r['success_rate']:.1%}",
                      f"{r['accident_rate']:.1%} [{r['accident_low']:.1%}, {r['accident_upper']:.1%}]", cost,
                      "yes" if r["safe"] else "**no**"])
    text = markdown_table(["task", "engine", "controller", "return", "normalised reward", "success",
                           "accidents [95%]", "normalised cost [95%]", "safe"], table)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
