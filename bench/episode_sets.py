"""A trained run's controllers on several sets of evaluation episodes, against a reference.

    python bench/episode_sets.py runs/pointnav --sets 1000 2000 3000 4000 5000 6000 --out runs/bench/episode_sets.json

One certification's 200 episodes are one sample of layouts; a return bar met by 0.1 on them
can fail on the next 200. This script rolls the run's exported files (the gated controller
and its ablations, through the torch+numpy runtime, as `safecritic evaluate` does) and the
reference (a scripted behaviour, e.g. `cautious`, or one of the ablations) out on each set
(deploy.seed = each --sets value), and counts, per engine, the sets on which the gated
controller meets the return reference and the accident / success criteria, and the sets on
which the actor alone (gate_off) returns at least BC on the successful episodes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import artifact_of, machine, markdown_table, write_json  # noqa: E402

from safecritic.configs import load_config  # noqa: E402
from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes  # noqa: E402
from safecritic.deploy.evaluate import evaluate_artifacts, summarize_env  # noqa: E402

VARIANTS = ["gated", "gate_off", "unconstrained", "bc_successful", "accident_only", "ood_only"]


def cell(summary: dict, key: str, fmt: str) -> str:
    """One table cell; "-" for a variant this run did not evaluate (--variants)."""
    return format(summary[key], fmt) if key in summary else "-"


def plot(rows: list[dict], reference: str, path: Path) -> None:
    """Mean return per episode set, one panel per engine: the reference against the controllers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = sorted({r["env"] for r in rows})
    fig, axes = plt.subplots(1, len(engines), figsize=(5.5 * len(engines), 3.6), squeeze=False, sharey=True)
    for ax, env in zip(axes[0], engines):
        mine = [r for r in rows if r["env"] == env]
        sets = [str(r["set"]) for r in mine]
        ax.plot(sets, [r["reference_return"] for r in mine], "k--", marker="s", label=reference)
        for variant, style in (("gated", "o-"), ("gate_off", "^-"), ("bc_successful", "v:")):
            if variant in mine[0]:
                ax.plot(sets, [r[variant]["mean_return"] for r in mine], style, label=variant)
        ax.set_title(env)
        ax.set_xlabel("episode set (deploy.seed)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean return (200 episodes)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a `safecritic run` folder (artifact/ and ablations/)")
    parser.add_argument("--sets", nargs="+", type=int, default=[1000, 2000, 3000, 4000, 5000, 6000],
                        help="deploy.seed of each episode set (1000: the certification's)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--reference", default="cautious", help="a scripted behaviour of the task")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/episode_sets.json"))
    parser.add_argument("--plot", type=Path, default=None, help="also draw each set's returns to this PNG")
    args = parser.parse_args()
    base = load_config(args.run_dir / "config.yaml")
    dirs = {v: artifact_of(args.run_dir, v) for v in args.variants}
    missing = [str(p) for p in dirs.values() if not (p / "manifest.json").exists()]
    if missing:
        sys.exit(f"error: no exported controller at {missing}; run `safecritic run` (it exports the ablations) first")
    rows = []
    for seed in args.sets:
        config = load_config(args.run_dir / "config.yaml", [f"deploy.seed={seed}", f"deploy.episodes={args.episodes}",
                                                            "deploy.trajectories=0"])
        results = evaluate_artifacts(list(dirs.values()), config)
        for env_id in config.env.eval_ids:
            ref = behavior_runs_on_evaluation_episodes(env_id, args.reference, args.episodes, seed, config.env.faults)
            row = {"set": seed, "env": env_id.split("/")[-1], "reference_return": float(np.mean([e.ret for e in ref]))}
            for variant, path in dirs.items():
                s = summarize_env(results[str(path)][env_id])
                row[variant] = {k: s[k] for k in ("success_rate", "accident_rate", "accident_rate_upper", "mean_return",
                                                  "mean_length")} | {"policy_share": s["decision_fractions"]["0"]}
            criteria = base.deploy.criteria.get(env_id)
            gated = row.get("gated")
            if gated and criteria:
                row["gated_meets"] = bool(gated["mean_return"] >= row["reference_return"]
                                          and gated["accident_rate_upper"] <= criteria.accident_rate_upper
                                          and (criteria.success_rate_min is None
                                               or gated["success_rate"] >= criteria.success_rate_min))
            if "gate_off" in row and "bc_successful" in row:
                row["actor_vs_bc_successful"] = row["gate_off"]["mean_return"] - row["bc_successful"]["mean_return"]
            rows.append(row)
            print({k: row[k] for k in ("set", "env", "reference_return")},
                  {v: round(row[v]["mean_return"], 2) for v in dirs}, flush=True)
    write_json(args.out, {"machine": machine(), "run_dir": str(args.run_dir), "reference": args.reference,
                          "episodes": args.episodes, "rows": rows})
    cols = ["set", "engine", f"{args.reference} return", "gated return", "gated success", "gated acc. (CP95 up)",
            "policy share", "gate_off return", "gate_off acc.", "bc_successful return"]
    table = []
    for r in rows:
        g, a, b = r.get("gated", {}), r.get("gate_off", {}), r.get("bc_successful", {})
        acc = f"{cell(g, 'accident_rate', '.1%')} ({cell(g, 'accident_rate_upper', '.1%')})"
        table.append([r["set"], r["env"], f"{r['reference_return']:.2f}", cell(g, "mean_return", ".2f"),
                      cell(g, "success_rate", ".1%"), acc, cell(g, "policy_share", ".1%"),
                      cell(a, "mean_return", ".2f"), cell(a, "accident_rate", ".1%"), cell(b, "mean_return", ".2f")])
    print(markdown_table(cols, table))
    if args.plot:
        plot(rows, args.reference, args.plot)
    for env in sorted({r["env"] for r in rows}):
        mine = [r for r in rows if r["env"] == env]
        met = sum(r.get("gated_meets", False) for r in mine)
        line = f"{env}: gated meets the criteria and the {args.reference} return on {met} of {len(mine)} sets"
        if all("actor_vs_bc_successful" in r for r in mine):
            ahead = sum(r["actor_vs_bc_successful"] >= 0 for r in mine)
            line += f"; the actor alone returns >= bc_successful on {ahead} of {len(mine)}"
        print(line)


if __name__ == "__main__":
    main()
