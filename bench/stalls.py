"""Where a run's controller stops short: its unfinished episodes, where they stall and who decides there.

    python bench/stalls.py runs/pointnav --out runs/bench/stalls.json
    python bench/stalls.py runs/panda_reach --variant gate_off

The certification's report splits a return gap into unfinished episodes and pace; this says what
the unfinished ones did. It rolls the exported controller (the gated one, or an ablation) on the
certification's episodes, keeping every path (`deploy.trajectories`), and for each episode that
neither succeeded nor had an accident finds its longest stall: the longest stretch over which
the observation's net change every `--window` steps stays within `--tol` (the root mean square
over entries, each in its spread over the engine's episodes): a slow drift in place counts,
motion does not.
For the stall it gives the decisions (the actor's own proposal, another candidate, the fallback) and
the proposal's Q_C against the cost threshold: a stall the proposal drives is the actor's (its mode
sits still), one the other candidates or the fallback drive is the gate's (it vetoes the proposal
and what it runs instead goes nowhere). Nothing here reads a task's observation entries by meaning.
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

PROPOSAL_Q_COST = RECORD_FIELDS.index("proposal_q_cost")


def longest_still_run(still: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in `still` ((0, 0) if none)."""
    best, start, run_start = 0, 0, None
    for t, s in enumerate([*still, False]):
        if s and run_start is None:
            run_start = t
        elif not s and run_start is not None:
            if t - run_start > best:
                best, start = t - run_start, run_start
            run_start = None
    return start, best


def stall_of(obs: np.ndarray, records: np.ndarray, scale: np.ndarray, window: int, tol: float,
             cost_threshold: float) -> dict:
    """The longest stall of one episode: where, how long, who decided, the proposal's risk there."""
    moved = (obs[window:] - obs[:-window]) / scale  # [T - W, D]: each entry's net change over W steps
    start, run = longest_still_run(np.sqrt((moved ** 2).mean(axis=1)) <= tol)
    length = min(run + window, len(records) - start) if run else 0
    out = {"stall_start": start, "stall_steps": length}
    if length:
        part = records[start : start + length]
        out["decisions"] = decision_shares(part)
        risk = part[:, PROPOSAL_Q_COST]
        if np.isfinite(risk).any():
            out["proposal_q_cost"] = float(np.nanmean(risk))
            out["proposal_over_threshold"] = float(np.nanmean(risk > cost_threshold))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `safecritic run` folder")
    parser.add_argument("--variant", default="gated", help="gated (default) or an ablation of the run's ablations/")
    parser.add_argument("--window", type=int, default=20, help="steps over which a stall's net motion is taken (default 20)")
    parser.add_argument("--tol", type=float, default=0.1,
                        help="still: the entries' RMS net change over a window, in their spreads, at most this (default 0.1)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/stalls.json"))
    args = parser.parse_args()
    results, cost_threshold = rolled_with_paths(args.run_dir, args.variant)
    rows, table = [], []
    for env_id, evaluation in results.items():
        episodes = evaluation.episodes
        if not all(e.reports_success for e in episodes):
            print(f"{env_id}: the env reports no success, so no episode is unfinished; nothing to trace")
            continue
        scale = np.concatenate([np.asarray(e.trace["obs"]) for e in episodes]).std(axis=0) + 1e-9
        for e in episodes:
            if e.success or e.accident:
                continue
            row = {"env": env_id, "index": e.index, "seed": e.seed, "length": e.length, "return": e.ret,
                   **stall_of(np.asarray(e.trace["obs"]), trace_records(e.trace), scale, args.window, args.tol,
                              cost_threshold)}
            rows.append(row)
            table.append([env_id.split("/")[-1], e.index, e.length, row["stall_start"], row["stall_steps"],
                          shares_text(row.get("decisions", {})),
                          f"{row['proposal_q_cost']:.3f}" if "proposal_q_cost" in row else "",
                          f"{row['proposal_over_threshold']:.0%}" if "proposal_over_threshold" in row else ""])
        print(f"{env_id}: {sum(r['env'] == env_id for r in rows)} unfinished of {len(episodes)} episodes")
    write_json(args.out, {"machine": machine(), "run_dir": str(args.run_dir), "variant": args.variant,
                          "window": args.window, "tol": args.tol, "cost_threshold": cost_threshold, "episodes": rows})
    if table:
        print(markdown_table(["engine", "episode", "length", "stall from step", "stall steps",
                              "policy / other / fallback in the stall", "proposal's Q_C there",
                              f"over {cost_threshold:g}"], table))


if __name__ == "__main__":
    main()
