"""The accident critics against the data: Q_C of the data's action next to its Monte-Carlo value.

    python bench/accident_calibration.py runs/hopper_velocity --out runs/bench/accident_calibration.json

On the run's held-out episodes (its test split, else its calibration split), every `--stride`-th
transition: the normalised discounted cost that actually followed the data's action,
(1 - gamma_C) sum_t gamma_C^t c_t along its episode (or the discounted accident indicator where
costs end the episode), next to the two heads' Q_C (pessimistic over members, as the constraint
and the gate read them): under the policy, and of recovery by the safest candidates. Where the
data's own continuation stayed within the budget epsilon, a head that reads those states over
it is what makes them infeasible for the constraint, so the table shows the share within the
budget by each measure. The policy head values the actor's continuation, not the data's, so the
two need not agree; a large gap is the critic's pessimism or the actor's future, not noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.controller.training import load_trained  # noqa: E402
from safecritic.critics.q_ensemble import POLICY_RISK, RECOVERY_RISK  # noqa: E402
from safecritic.pipeline import load_data  # noqa: E402


def monte_carlo_cost(cost: np.ndarray, episode: np.ndarray, terminal: np.ndarray, gamma: float, q_max: float) -> np.ndarray:
    """The normalised discounted cost that followed each transition within its episode."""
    out = np.zeros_like(cost, dtype=np.float64)
    for i in range(len(cost) - 1, -1, -1):
        continues = i + 1 < len(cost) and episode[i + 1] == episode[i] and not terminal[i]
        out[i] = cost[i] / q_max + gamma * (out[i + 1] if continues else 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `safecritic run` folder")
    parser.add_argument("--stride", type=int, default=5, help="every stride-th held-out transition (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/accident_calibration.json"))
    args = parser.parse_args()
    config, model, _ = load_trained(args.run_dir)
    data = load_data(config)
    held = data.test if len(data.test) else data.calib
    gamma, q_max, eps = config.critics.accident.gamma, model.critic.cost_q_max, config.policy.cost_limit
    mc = monte_carlo_cost(held.cost.numpy(), held.episode.numpy(), held.terminal.numpy(), gamma, q_max)
    idx = torch.arange(0, len(held), args.stride)
    with torch.no_grad():
        _, logits = model.critic(model.normalize_obs(held.obs[idx]), model.to_unit_action(held.act[idx]).unsqueeze(0))
        if logits is None:
            sys.exit(f"error: the run in {args.run_dir} has no accident critic")
        q_c = model.critic.cost_value(logits.float().max(dim=0).values)[0].numpy()  # [N, heads]
    m = mc[idx.numpy()]
    within = m <= eps

    def summary(name: str, q: np.ndarray) -> dict:
        """A measure's mean and share within epsilon, over all the states and over the data-safe ones."""
        there = q[within] if within.any() else None
        return {"measure": name, "mean": float(q.mean()), "share_within": float((q <= eps).mean()),
                "mean_where_data_within": None if there is None else float(there.mean()),
                "share_within_where_data_within": None if there is None else float((there <= eps).mean())}

    rows = [summary("data's continuation (Monte Carlo)", m), summary("Q_C under the policy", q_c[:, POLICY_RISK]),
            summary("Q_C of recovery", q_c[:, RECOVERY_RISK]), summary("min of the two (the gate's)", q_c.min(axis=1))]
    write_json(args.out, {"machine": machine(), "run_dir": str(args.run_dir), "epsilon": eps, "gamma_c": gamma,
                          "transitions": int(len(idx)), "rows": rows})
    print(f"{args.run_dir}: {len(idx)} held-out transitions, epsilon {eps}, gamma_C {gamma}")
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    print(markdown_table(["measure", "mean", "share <= epsilon", "mean where the data's is <= epsilon",
                          "share <= epsilon there"],
                         [[r["measure"], fmt(r["mean"]), fmt(r["share_within"]), fmt(r["mean_where_data_within"]),
                           fmt(r["share_within_where_data_within"])] for r in rows]))


if __name__ == "__main__":
    main()
