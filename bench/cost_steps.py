"""Where a run's controller pays its cost: who decided at the costly steps and the steps before them.

    python bench/cost_steps.py runs/keepout --out runs/bench/cost_steps.json
    python bench/cost_steps.py runs/keepout --variant gate_off --before 15

The certification's report gives a run's mean episode cost; this says how the gate came to pay
it. It rolls the exported controller (the gated one, or an ablation) on the certification's
episodes, keeping every path (`deploy.trajectories`), and for every step whose cost is positive,
and for each of the `--before` steps leading up to an episode's first cost, gives the decisions
(the actor's own proposal, another candidate, the fallback) and the Q_C of the action run and of
the proposal, against the cost threshold. A cost paid under the proposal with Q_C within the
threshold is the critics' miss; one paid under the fallback is a state where nothing the gate
was offered read within the budget. Nothing here reads a task's observation entries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import decision_shares, machine, markdown_table, rolled_with_paths, shares_text, write_json  # noqa: E402

from safecritic.controller.gate import RECORD_FIELDS  # noqa: E402
from safecritic.deploy.evaluate import trace_records  # noqa: E402

Q_COST, PROPOSAL_Q_COST = RECORD_FIELDS.index("q_cost"), RECORD_FIELDS.index("proposal_q_cost")


def summary(records: np.ndarray, cost_threshold: float) -> dict:
    """Decision shares and the Q_C readings over a set of steps' records [N, R]."""
    if not len(records):
        return {"steps": 0}
    proposal = records[:, PROPOSAL_Q_COST]
    return {"steps": int(len(records)), "decisions": decision_shares(records),
            "q_cost_run_median": float(np.nanmedian(records[:, Q_COST])),
            "proposal_q_cost_median": float(np.nanmedian(proposal)),
            "proposal_over_threshold": float(np.nanmean(proposal > cost_threshold))}


def split_steps(records: np.ndarray, cost: np.ndarray, before: int) -> tuple[np.ndarray, np.ndarray]:
    """(the costly steps' records, the records of the `before` steps before the first costly one)."""
    costly = cost > 0  # a kept path holds one cost per record
    if not costly.any():
        return records[:0], records[:0]
    first = int(np.argmax(costly))
    return records[costly], records[max(0, first - before) : first]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `safecritic run` folder")
    parser.add_argument("--variant", default="gated", help="gated (default) or an ablation of the run's ablations/")
    parser.add_argument("--before", type=int, default=5, help="steps before an episode's first cost to summarise (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/cost_steps.json"))
    args = parser.parse_args()
    results, cost_threshold = rolled_with_paths(args.run_dir, args.variant)
    rows, table = [], []
    for env_id, evaluation in results.items():
        every, costly, lead = [], [], []
        for e in evaluation.episodes:
            records = trace_records(e.trace)
            costly_steps, lead_steps = split_steps(records, np.asarray(e.trace["cost"], dtype=float), args.before)
            every.append(records)
            costly.append(costly_steps)
            lead.append(lead_steps)
        with_cost = sum(len(c) > 0 for c in costly)
        for name, parts in (("every step", every), ("costly steps", costly), (f"{args.before} steps before the first cost", lead)):
            row = {"env": env_id, "steps_of": name, **summary(np.concatenate(parts), cost_threshold)}
            rows.append(row)
            table.append([env_id.split("/")[-1], name, row["steps"], shares_text(row.get("decisions", {})),
                          f"{row.get('q_cost_run_median', float('nan')):.3f}",
                          f"{row.get('proposal_q_cost_median', float('nan')):.3f}",
                          f"{row.get('proposal_over_threshold', float('nan')):.0%}"])
        print(f"{env_id}: {with_cost} of {len(evaluation.episodes)} episodes paid a cost")
    write_json(args.out, {"machine": machine(), "run_dir": str(args.run_dir), "variant": args.variant,
                          "before": args.before, "cost_threshold": cost_threshold, "rows": rows})
    print(markdown_table(["engine", "steps", "n", "policy / other / fallback", "Q_C of the action run (median)",
                          "proposal's Q_C (median)", f"proposal over {cost_threshold:g}"], table))


if __name__ == "__main__":
    main()
