"""Contrastive curriculum vs plain CQL on the same data, several seeds.

    python bench/curriculum.py --seeds 0 1 2 --episodes 200 --markdown docs/curriculum.md

Both arms train the task critic and its SAC actor only (accident critic, constraints and
the twin actor off, so the "plain" arm is exactly plain CQL); the curriculum arm weights CQL's push-down of each
sampled action by the OOD detector's probability that the action is OOD. Each trained
actor is rolled out deterministically in MuJoCo on the same evaluation seeds, and so is
BC (the behaviour prior's mode) of each seed's run: baselines paired seed by seed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.configs import load_config  # noqa: E402
from safecritic.controller.evaluation import evaluate_run  # noqa: E402
from safecritic.pipeline import POST_TRAINING_SECTIONS, check_run_dir, train  # noqa: E402

ARMS = {"plain CQL": "none", "contrastive curriculum": "ood_weighted"}
BC_ROW = "BC (the same runs' prior)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, default=None, help="base config (default: packaged PointNav)")
    parser.add_argument("-o", "--override", action="append", default=[], help="extra overrides for both arms")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                        help="which arms to train (default both); e.g. --arms 'plain CQL' for the baseline alone")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per evaluation seed set")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[1000],
                        help="evaluation seed sets (each gives --episodes episodes); several pool into the table and "
                             "show apart below it, e.g. 1000 5000 9000 to check a choice on episodes it was not made on")
    parser.add_argument("--reuse", action="store_true",
                        help="keep finished runs in --runs whose config matches (resumed, not retrained)")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench/curriculum"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/curriculum.json"))
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        for arm in args.arms:
            mode = ARMS[arm]
            overrides = [*args.override, f"run.seed={seed}", f"critics.task.curriculum={mode}",
                         "critics.accident.enabled=false", "policy.constraints.enabled=false", "policy.plain_actor=false"]
            config = load_config(args.config, overrides)
            run_dir = args.runs / f"{mode}-s{seed}"
            reuse = args.reuse and (run_dir / "config.yaml").is_file()
            if reuse:
                # The training sections must match; gate/deploy do not matter to this bench.
                check_run_dir(run_dir, config, resume=True, ignore=POST_TRAINING_SECTIONS)
                config = load_config(run_dir / "config.yaml")
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
            start = time.perf_counter()
            summary = train(config, run_dir, resume=reuse)
            seconds = time.perf_counter() - start
            policies = [(arm, "actor")]
            if arm == args.arms[0]:
                # The prior (BC) does not depend on the arm: evaluate it once per seed, on the same episodes.
                policies.append((BC_ROW, "bc"))
            for name, which in policies:
                for eval_seed in args.eval_seeds:
                    report = evaluate_run(run_dir, which, [config.env.id], args.episodes, seed=eval_seed)
                    s = report["results"][config.env.id]
                    s.update(arm=name, seed=seed, eval_seed=eval_seed, train_seconds=seconds,
                             updates_per_s=summary["critic_updates_per_s"])
                    results.append(s)
                    print(f"{name:<24} seed {seed}, episodes of {eval_seed}: return {s['mean_return']:.2f}, success "
                          f"{s['success_rate']:.1%}, accidents {s['accident_rate']:.1%} ({seconds:.0f} s)", flush=True)

    def pooled(arm: str, key: str, eval_seeds: list[int]) -> np.ndarray:
        """Per training seed, `key` averaged over the evaluation sets (each has the same episode count)."""
        return np.array([np.mean([r[key] for r in results if r["arm"] == arm and r["seed"] == seed
                                  and r["eval_seed"] in eval_seeds]) for seed in args.seeds])

    rows = []
    for arm in [*args.arms, BC_ROW]:
        ret, acc, suc = (pooled(arm, key, args.eval_seeds) for key in ("mean_return", "accident_rate", "success_rate"))
        several = len(args.seeds) > 1
        rows.append([arm, len(args.seeds), f"{ret.mean():.2f} ± {ret.std(ddof=1) if several else 0:.2f}",
                     f"{suc.mean():.1%}", f"{acc.mean():.1%} ± {acc.std(ddof=1) if several else 0:.1%}",
                     " / ".join(f"{x:.1f}" for x in ret)])
    table = markdown_table(["arm", "seeds", "mean return ± sd", "success", "accident rate ± sd", "return per seed"], rows)
    if len(args.eval_seeds) > 1:
        table += "\n\nMean return over the training seeds, per evaluation seed set:\n\n" + markdown_table(
            ["arm", *(f"episodes of seed {e}" for e in args.eval_seeds)],
            [[arm, *(f"{pooled(arm, 'mean_return', [e]).mean():.2f}" for e in args.eval_seeds)]
             for arm in [*args.arms, BC_ROW]])
    write_json(args.out, {"machine": machine(), "episodes": args.episodes, "results": results})
    print(table)
    if args.markdown:
        command = "python bench/curriculum.py --seeds " + " ".join(map(str, args.seeds)) + f" --episodes {args.episodes}"
        if args.eval_seeds != [1000]:
            command += " --eval-seeds " + " ".join(map(str, args.eval_seeds))
        if args.arms != list(ARMS):
            command += " --arms " + " ".join(f"'{a}'" for a in args.arms)
        command += "".join(f" -o {o}" for o in args.override) + f" --markdown {args.markdown}"
        args.markdown.write_text(
            ("# Contrastive curriculum vs plain CQL" if len(args.arms) > 1 else f"# {args.arms[0]} alone") + "\n\n" + (__doc__ or "").split("\n\n", 2)[2].strip() + "\n\n"
            + f"{args.episodes} evaluation episodes per seed and evaluation seed set "
            f"({', '.join(map(str, args.eval_seeds))}; MuJoCo).\n\n{table}\n\nProduced by:\n\n```\n{command}\n```\n"
        )


if __name__ == "__main__":
    main()
