"""Measure the scripted behaviours in every engine (success, accidents, return, length).

    python bench/behaviors.py --episodes 200 --out runs/bench/behaviors.json --markdown runs/bench/behaviors.md

Each behaviour runs the same episode seeds in each engine, so the rows compare the
engines on identical layouts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.deploy.report import success_cell  # noqa: E402
from safecritic.envs.collect import collect_episodes  # noqa: E402
from safecritic.envs.registry import behaviors_for  # noqa: E402
from safecritic.envs.rollout import summarize  # noqa: E402

ENVS = ["safecritic/PointNav-v0", "safecritic/PointNavBullet-v0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12345, help="episode seeds (not the training data's seed)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/behaviors.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write this Markdown file")
    args = parser.parse_args()

    rows, results = [], []
    for env_id in ENVS:
        for name in behaviors_for(env_id):
            start = time.perf_counter()
            episodes = [ep for _, ep in collect_episodes(env_id, [name] * args.episodes, args.seed, args.workers)]
            s = summarize(episodes)
            s.update(env_id=env_id, behavior=name, seconds=time.perf_counter() - start)
            results.append(s)
            rows.append([
                env_id, name, s["episodes"], success_cell(s), f"{s['accident_rate']:.1%}",
                f"{s['mean_return']:.2f}", f"{s['mean_length']:.1f}",
            ])
    headers = ["env", "behaviour", "episodes", "success", "accident", "mean return", "mean length"]
    table = markdown_table(headers, rows)
    write_json(args.out, {"machine": machine(), "episodes": args.episodes, "seed": args.seed, "results": results})
    print(table)
    if args.markdown:
        command = f"python bench/behaviors.py --episodes {args.episodes} --seed {args.seed} --markdown {args.markdown}"
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            "# PointNav behaviour policies\n\n"
            "The scripted behaviours that generate the offline data (envs/pointnav/behaviors.py), "
            f"{args.episodes} episodes each, the same episode seeds in both engines.\n\n"
            f"{table}\n\nProduced by:\n\n```\n{command}\n```\n"
        )


if __name__ == "__main__":
    main()
