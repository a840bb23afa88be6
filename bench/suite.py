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

`--learners all` adds every learner of policy.learner (controller/learners/) trained on the run's
data, each alone (gate off) and gated, over `--seeds`; `--d3rlpy all` adds d3rlpy's CQL, BCQ,
BEAR and BC on the same data and seeds (its own virtual environment, bench/vs_d3rlpy.py). A
learner's row pools its seeds' episodes (the accident interval over all of them) and gives each
seed's mean return and their spread. `--steps` and `--episodes` set a smaller budget; the
small-budget variant, in CI time on 2 cores (docs/results.md has its figures and cost):

    safecritic run -o train.steps=1500 -o deploy.episodes=50 -o run.name=pointnav-small
    python bench/suite.py runs/pointnav-small --learners all --d3rlpy all --steps 1500 --episodes 50

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
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, scripted_policy, write_json  # noqa: E402
from learner_runs import D3RLPY_ALGOS  # noqa: E402

from safecritic.configs import load_config  # noqa: E402
from safecritic.configs.schema import Config, CriteriaConfig  # noqa: E402
from safecritic.controller.evaluation import rollout_policy  # noqa: E402
from safecritic.controller.learners import LEARNERS  # noqa: E402
from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes  # noqa: E402
from safecritic.deploy.certify import clopper_pearson  # noqa: E402
from safecritic.deploy.report import success_cell  # noqa: E402
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
           "reports_success": any(e.get("reports_success", True) for e in episodes),
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


def pooled_row(task: str, env_id: str, controller: str, per_seed: list[list[dict[str, Any]]],
               criteria: CriteriaConfig, r_range: tuple[float, float], seconds: list[float | None]) -> dict[str, Any]:
    """One controller's row over several training seeds: the seeds' episodes pooled (the accident
    interval over all of them), and each seed's mean return and the seeds' spread beside it."""
    out = row(task, env_id, controller, [e for eps in per_seed for e in eps], criteria, r_range)
    by_seed = [float(np.mean([e["ret"] for e in eps])) for eps in per_seed]
    return out | {"seeds": len(per_seed), "return_by_seed": by_seed, "return_spread": [min(by_seed), max(by_seed)],
                  "accident_rate_by_seed": [float(np.mean([bool(e["accident"]) for e in eps])) for eps in per_seed],
                  "train_seconds_by_seed": seconds}


def learner_rows(run_dir: Path, config: Config, r_range: tuple[float, float], learners: list[str], d3rlpy: list[str],
                 seeds: list[int], steps: int | None, episodes: int | None, work: Path) -> list[dict[str, Any]]:
    """Each learner alone and gated, and each d3rlpy algorithm, over `seeds` (bench/learner_runs.py)."""
    from learner_runs import d3rlpy_evaluations, learner_evaluations

    runs: dict[str, list[dict[str, Any]]] = {}
    for learner in learners:
        for seed in seeds:
            print(f"{config.run.name}: {learner} seed {seed}", flush=True)
            runs.setdefault(learner, []).append(learner_evaluations(run_dir, learner, seed, work, steps, episodes))
    d3 = {algo: [d3rlpy_evaluations(run_dir, algo, s, work, steps or config.train.steps, episodes) for s in seeds]
          for algo in d3rlpy}
    rows = []
    for env_id in config.env.eval_ids:
        criteria = config.deploy.criteria[env_id]
        for learner, results in runs.items():
            seconds = [r["train_seconds"] for r in results]
            for variant, label in (("gate_off", "alone"), ("gated", "gated")):
                rows.append(pooled_row(config.run.name, env_id, f"{learner} {label}",
                                       [r[variant][env_id] for r in results], criteria, r_range, seconds))
        for algo, results in d3.items():
            rows.append(pooled_row(config.run.name, env_id, f"d3rlpy {algo}", [r["alone"][env_id] for r in results],
                                   criteria, r_range, [r["train_seconds"] for r in results]))
    return rows


def run_rows(run_dir: Path, plain_cql: Path | None, plain_cql_updates: int, episodes: int | None = None,
             ) -> list[dict[str, Any]]:
    """The run's own controllers and the task's behaviours (and plain CQL), on the first `episodes`
    of the run's evaluation episodes (all of them by default)."""
    config = load_config(run_dir / "config.yaml")
    import_modules(config.env.imports)
    d, task = config.deploy, config.run.name
    n = episodes or d.episodes
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
            runs = behavior_runs_on_evaluation_episodes(env_id, name, n, d.seed, config.env.faults)
            eps = [{"ret": e.ret, "cost": e.cost, "accident": e.accident, "success": e.success,
                    "reports_success": e.reports_success} for e in runs]
            rows.append(row(task, env_id, f"behaviour {name}", eps, criteria, r_range))
        if cql is not None:
            runs = rollout_policy(cql, env_id, n, d.seed, config.env.faults)
            eps = [{"ret": e.ret, "cost": e.cost, "accident": e.accident, "success": e.success,
                    "reports_success": e.reports_success} for e in runs]
            rows.append(row(task, env_id, "plain CQL", eps, criteria, r_range))
        for name, envs in evaluations.items():
            rows.append(row(task, env_id, name, envs[env_id]["episodes"][:n], criteria, r_range))
        print(f"{task} {env_id}: {len(rows)} rows", flush=True)
    return rows


# Ours and d3rlpy's implementation of the same algorithm (the external check that ours are sound).
COUNTERPARTS = {"bc alone": "d3rlpy bc", "bcq alone": "d3rlpy bcq", "bear alone": "d3rlpy bear",
                "plain CQL": "d3rlpy cql"}


def against_d3rlpy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task and engine, each of ours against d3rlpy's: ours is sound when its mean return is at
    least the lowest of d3rlpy's seeds (within their spread, or better)."""
    out = []
    for r in rows:
        theirs = next((t for t in rows if t["controller"] == COUNTERPARTS.get(r["controller"])
                       and t["task"] == r["task"] and t["env"] == r["env"]), None)
        if theirs is not None:
            low, high = theirs.get("return_spread", [theirs["mean_return"]] * 2)
            out.append({"task": r["task"], "env": r["env"], "ours": r["controller"], "ours_return": r["mean_return"],
                        "ours_spread": r.get("return_spread"), "theirs": theirs["controller"],
                        "theirs_return": theirs["mean_return"], "theirs_spread": [low, high],
                        "within_or_better": r["mean_return"] >= low})
    return out


def default_against_peers(rows: list[dict[str, Any]], default: str = "csc gated") -> list[dict[str, Any]]:
    """Per task and engine, every learner and d3rlpy row the default stack's gated controller is not on
    the safe side of (it unsafe, or returning less than the peer)."""
    out = []
    for d in (r for r in rows if r["controller"] == default):
        for p in rows:
            peer = p["controller"]
            if p["task"] != d["task"] or p["env"] != d["env"] or peer == default or not (
                    peer.endswith((" alone", " gated")) or peer.startswith("d3rlpy")):
                continue
            if not d["safe"] or d["mean_return"] < p["mean_return"]:
                out.append({"task": d["task"], "env": d["env"], "peer": peer, "peer_return": p["mean_return"],
                            "peer_safe": p["safe"], "default_return": d["mean_return"], "default_safe": d["safe"]})
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Normalised reward against accidents (or normalised cost) per task; the safe region shaded.
    One colour per controller, one marker per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    controllers = list(dict.fromkeys(r["controller"] for r in rows))
    palette = [*plt.cm.tab20.colors, *plt.cm.tab20b.colors, *plt.cm.tab20c.colors]  # 60 distinct colours
    colour = {c: palette[i % len(palette)] for i, c in enumerate(controllers)}
    columns = 1 if len(controllers) <= 20 else 2  # the legend beside the panels, in one or two columns
    legend_width = 2.2 * columns
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks) + legend_width,
                                                     max(3.8, 0.2 * len(controllers) / columns + 0.6)), squeeze=False)
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
    fig.legend(handles=handles, loc="center right", fontsize=8, ncol=columns)
    fig.tight_layout(rect=(0, 0, 1 - legend_width / (4.6 * len(tasks) + legend_width), 1))
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
    parser.add_argument("--learners", default="", metavar="NAMES",
                        help="comma-separated policy.learner names (or 'all') trained on each run's data, alone and gated")
    parser.add_argument("--d3rlpy", default="", metavar="ALGOS",
                        help=f"comma-separated d3rlpy algorithms (or 'all': {', '.join(D3RLPY_ALGOS)}) on the same data")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds of the learners and d3rlpy (default 0,1,2)")
    parser.add_argument("--steps", type=int, default=None,
                        help="updates per learner and d3rlpy run (default: each preset's train.steps)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="evaluation episodes per engine (default: each preset's deploy.episodes); a prefix "
                        "of the certification's episodes, the same for every row")
    parser.add_argument("--work", type=Path, default=Path("runs/bench/suite"),
                        help="where the learners' runs and d3rlpy's policies go (reused when present)")
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
    learners = list(LEARNERS) if args.learners == "all" else [x for x in args.learners.split(",") if x]
    d3rlpy = list(D3RLPY_ALGOS) if args.d3rlpy == "all" else [x for x in args.d3rlpy.split(",") if x]
    unknown = sorted(set(learners) - set(LEARNERS)) + sorted(set(d3rlpy) - set(D3RLPY_ALGOS))
    if unknown:
        sys.exit(f"error: unknown {', '.join(unknown)}; learners: {', '.join(LEARNERS)}; d3rlpy: {', '.join(D3RLPY_ALGOS)}")
    seeds = [int(x) for x in args.seeds.split(",")]
    # Every folder checked before any training: a missing one is refused now, not after the others' work is lost.
    missing = [str(d) for d in args.run_dirs if not (d / "config.yaml").is_file()]
    if missing:
        sys.exit(f"error: not a `safecritic run` folder (no config.yaml): {', '.join(missing)}; run its preset first, "
                 "e.g. `safecritic run -c configs/<task>.yaml`")
    rows, started = [], time.perf_counter()
    for run_dir in args.run_dirs:
        config = load_config(run_dir / "config.yaml")
        bars = {e: c.accident_rate_upper for e, c in config.deploy.criteria.items()}
        mine = run_rows(run_dir, extra.get(run_dir.resolve()), args.plain_cql_updates, args.episodes)
        if learners or d3rlpy:
            mine += learner_rows(run_dir, config, dataset_return_range(config), learners, d3rlpy, seeds, args.steps,
                                 args.episodes, args.work)
        rows += [r | {"bar": bars[r["env"]]} for r in mine]
    cost = {"wall_seconds": time.perf_counter() - started, "learners": learners, "d3rlpy": d3rlpy, "seeds": seeds,
            "steps": args.steps, "episodes": args.episodes}
    checks, misses = against_d3rlpy(rows), default_against_peers(rows)
    write_json(args.out, {"machine": machine(), "runs": [str(p) for p in args.run_dirs], "cost": cost, "rows": rows,
                          "against_d3rlpy": checks, "default_not_on_the_safe_side_of": misses})
    table = []
    for r in rows:
        cost_cell = "" if "normalized_cost" not in r else (
            f"{r['normalized_cost']:.2f} [{r['normalized_cost_interval'][0]:.2f}, {r['normalized_cost_interval'][1]:.2f}]")
        spread = "" if "return_spread" not in r else f" [{r['return_spread'][0]:.2f}, {r['return_spread'][1]:.2f}]"
        table.append([r["task"], r["env"].split("/")[-1], r["controller"], f"{r['mean_return']:.2f}{spread}",
                      f"{r['normalized_reward']:.3f}", success_cell(r),
                      f"{r['accident_rate']:.1%} [{r['accident_low']:.1%}, {r['accident_upper']:.1%}]", cost_cell,
                      "yes" if r["safe"] else "**no**"])
    text = markdown_table(["task", "engine", "controller", "return [seeds' range]", "normalised reward", "success",
                           "accidents [95%]", "normalised cost [95%]", "safe"], table)
    if checks:
        text += "\n\n" + markdown_table(
            ["task", "engine", "ours", "return [seeds]", "d3rlpy", "return [seeds]", "within d3rlpy's spread or better"],
            [[c["task"], c["env"].split("/")[-1], c["ours"], f"{c['ours_return']:.2f}" + (
                f" [{c['ours_spread'][0]:.2f}, {c['ours_spread'][1]:.2f}]" if c["ours_spread"] else ""),
              c["theirs"], f"{c['theirs_return']:.2f} [{c['theirs_spread'][0]:.2f}, {c['theirs_spread'][1]:.2f}]",
              "yes" if c["within_or_better"] else "**no**"] for c in checks])
    if learners or d3rlpy:
        text += "\n\n" + ("The default's gated controller is on the safe side of every peer." if not misses else
                           "Where the default's gated controller is not on the safe side of a peer:\n\n" + markdown_table(
            ["task", "engine", "peer", "peer return", "peer safe", "default return", "default safe"],
            [[m["task"], m["env"].split("/")[-1], m["peer"], f"{m['peer_return']:.2f}", "yes" if m["peer_safe"] else "no",
              f"{m['default_return']:.2f}", "yes" if m["default_safe"] else "no"] for m in misses]))
    print(text)
    print(f"suite: {cost['wall_seconds'] / 60:.1f} min wall (each learner's training seconds per seed are in {args.out})")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
