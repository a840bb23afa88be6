"""Quality table: the gated controller, the actor alone, its unconstrained twin and BC (from a
`safecritic run` report) beside plain CQL and d3rlpy's CQL (the policies bench/vs_d3rlpy.py
saved), in every engine, same seeds.

    python bench/quality.py runs/pointnav --episodes 200 --out runs/bench/quality.json

The report's rows were produced by `safecritic run` through the exported TorchScript
files; the TorchScript policies of bench/vs_d3rlpy.py (bench/plain_cql.py's and d3rlpy's
save_policy) are rolled out here on the same episode seeds (deploy.seed), so every row
shares its episodes when --episodes is the report's count. Accident rates carry the
two-sided interval whose ends are one-sided 95% Clopper-Pearson bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, scripted_policy, write_json  # noqa: E402

from safecritic.controller.evaluation import rollout_policy  # noqa: E402
from safecritic.deploy.certify import clopper_pearson  # noqa: E402
from safecritic.deploy.report import success_cell  # noqa: E402
from safecritic.envs.rollout import summarize  # noqa: E402

# The report's variants (deploy/export.py) shown, in order.
KEEP = {"gated (full)": "safecritic gated controller", "gate_off": "the actor alone (same run, no gate)",
        "unconstrained": "unconstrained actor (same run, no accident constraint, no gate)",
        "bc": "BC (behaviour prior's mode)", "bc_successful": "BC on the successful episodes (pi_ref's mode)"}
# bench/vs_d3rlpy.py's saved policies: (option, row name, file in its --work folder).
SAVED = [("ours_policy", "plain CQL (bench/plain_cql.py, bench/vs_d3rlpy.py)", "plain_cql_policy.pt"),
         ("d3rlpy_policy", "d3rlpy 2.8.1 CQL (bench/vs_d3rlpy.py)", "d3rlpy_policy.pt")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run that went through `safecritic run` (has report/report.json)")
    for option, name, file in SAVED:
        parser.add_argument(f"--{option.replace('_', '-')}", type=Path, default=Path("runs/bench/vs_d3rlpy") / file,
                            help=f"TorchScript of the row '{name}'")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/quality.json"))
    args = parser.parse_args()
    report = json.loads((args.run_dir / "report" / "report.json").read_text())
    rows = [dict(r, name=KEEP[r["variant"]]) for r in report["ablations"] if r["variant"] in KEEP]
    engines = sorted({r["env_id"] for r in rows})
    torch.set_num_threads(1)
    for option, name, _ in SAVED:
        path = getattr(args, option)
        if not path.is_file():
            print(f"no policy at {path}: run bench/vs_d3rlpy.py first for the row '{name}'")
            continue
        for env_id in engines:
            s = summarize(rollout_policy(scripted_policy(path), env_id, args.episodes, report["seed"]))
            n = round(s["accident_rate"] * args.episodes)
            low, high = clopper_pearson(n, args.episodes)
            rows.append({"name": name, "env_id": env_id, "mean_return": s["mean_return"],
                         "success_rate": s["success_rate"], "reports_success": s["reports_success"],
                         "accident_rate": s["accident_rate"],
                         "accident_rate_low": low, "accident_rate_upper": high})
    order = [*KEEP.values(), *(name for _, name, _ in SAVED)]
    rows.sort(key=lambda r: (r["env_id"], order.index(r["name"])))
    table = markdown_table(
        ["engine", "controller", "mean return", "success", "accident rate [95% CP]"],
        [[r["env_id"].split("/")[-1], r["name"], f"{r['mean_return']:.2f}", success_cell(r),
          f"{r['accident_rate']:.1%} [{r['accident_rate_low']:.1%}, {r['accident_rate_upper']:.1%}]"] for r in rows],
    )
    write_json(args.out, {"machine": machine(), "run": str(args.run_dir), "episodes": report["episodes"],
                          "seed": report["seed"], "rows": rows})
    print(table)


if __name__ == "__main__":
    main()
