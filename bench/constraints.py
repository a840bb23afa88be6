"""The state-wise accident constraint, three ways, side by side on the same data.

    python bench/constraints.py --seeds 0 --episodes 200 --out runs/bench/constraints.json

The shipped actor (controller/constraint.py) is an advantage-weighted fit of the successful
episodes' actions, feasibility-guided (FISOR): inside the feasible set exp(beta A_R) for the
actions within the budget and 0 for those over it, outside it exp(-beta A_C). This script
trains, on the same dataset, seeds and update schedule, the two alternatives the issue asked
for, built here as modules for evaluation (not switches in the shipped controller):

- `fac`: a state-dependent multiplier lambda(s) (Feasible Actor-Critic, Ma et al. 2021), a
  small network ascending on the actor's own violation Q_C(s, pi(s)) - epsilon state by
  state; weights exp(beta (A_R / sigma_A - lambda(s) Q_C / sigma_C));
- `penalty`: a fixed per-state penalty on the positive part, exp(beta (A_R / sigma_A - kappa
  relu(Q_C - epsilon) / sigma_C));
- and `none`: the same fit by return alone (the shipped run's `unconstrained` twin).

Each trained actor is rolled out alone (its mode, no gate) and behind the gate, on the
certification's episodes, in every engine of the config; the table gives success, accidents,
mean episode cost, return, mean length and the gate's share of the policy's own proposals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.controller.constraint import MAX_WEIGHT, spread  # noqa: E402
from safecritic.controller.evaluation import rollout_policy  # noqa: E402
from safecritic.controller.gate import CODE_POLICY, GatedController, PolicyController  # noqa: E402
from safecritic.controller.training import Trainer  # noqa: E402
from safecritic.controller.update import Update  # noqa: E402
from safecritic.critics.networks import MLP  # noqa: E402
from safecritic.critics.q_ensemble import POLICY_RISK  # noqa: E402
from safecritic.envs.rollout import summarize  # noqa: E402
from safecritic.pipeline import check, load, load_data  # noqa: E402

KAPPA = 10.0  # the penalty's weight on relu(Q_C - epsilon), in units of Q_C's spread per unit of the advantage's
LAMBDA_MAX = 100.0  # FAC's cap on lambda(s), the same units


def _advantage_weights(constraint, q_r, q_c, baseline, risk_term):
    """exp(beta (A_R / sigma_A - risk_term)), clipped as the shipped weights are."""
    advantage = q_r[0] - baseline
    return torch.exp(constraint.beta * (advantage / spread(advantage) - risk_term)).clamp(max=MAX_WEIGHT)


class PenaltyUpdate(Update):
    """Weights exp(beta (A_R / sigma_A - kappa relu(Q_C - epsilon) / sigma_C)) for every data action: no mask."""

    def constraint_at(self, batch):
        q_r, q_c, w, support = super().constraint_at(batch)
        baseline = self.baseline(batch, q_r)
        excess = F.relu(q_c[0] - self.constraint.epsilon) / spread(q_c)
        weights = _advantage_weights(self.constraint, q_r, q_c, baseline, KAPPA * excess)
        return q_r, q_c, w._replace(weights=weights), support


class FACUpdate(Update):
    """Weights exp(beta (A_R / sigma_A - lambda(s) Q_C / sigma_C)); lambda(s) = max sigmoid(g(s)) with g
    ascending on Q_C(s, mode pi(s)) - epsilon (on the logit, so a saturated multiplier can come down)."""

    def __init__(self, model, config, optimizers, generator) -> None:
        super().__init__(model, config, optimizers, generator)
        self.multiplier = MLP(model.obs_norm.mean.numel(), [64, 64], 1)
        self.opt_multiplier = torch.optim.Adam(self.multiplier.parameters(), lr=config.policy.lr)

    def constraint_at(self, batch):
        q_r, q_c, w, support = super().constraint_at(batch)
        baseline = self.baseline(batch, q_r)
        with torch.no_grad():
            lam = LAMBDA_MAX * torch.sigmoid(self.multiplier(batch.obs).squeeze(-1))
        weights = _advantage_weights(self.constraint, q_r, q_c, baseline, lam * q_c[0] / spread(q_c))
        return q_r, q_c, w._replace(weights=weights), support

    def __call__(self, batch, actor_batch):
        out = super().__call__(batch, actor_batch)
        obs = actor_batch.obs
        with torch.no_grad():
            _, logits = self.model.critic(obs, self.model.actor.mode(obs))
            q_mode = self.model.critic.cost_value(logits[..., POLICY_RISK].max(dim=0).values)
        logit = self.multiplier(obs).squeeze(-1)
        loss = -(logit * (q_mode - self.constraint.epsilon)).mean()  # ascent on the violation
        self.opt_multiplier.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_multiplier.step()
        with torch.no_grad():
            lam = LAMBDA_MAX * torch.sigmoid(logit)
        out.update(multiplier_mean=lam.mean(), multiplier_positive=(lam > 0.01 * LAMBDA_MAX).float().mean())
        return out


class NoConstraintUpdate(Update):
    """The fit by return alone, as the actor (not only its twin)."""

    def constraint_at(self, batch):
        q_r, q_c, w, support = super().constraint_at(batch)
        return q_r, q_c, w._replace(weights=w.unconstrained), support


VARIANTS = {"fisor": Update, "fac": FACUpdate, "penalty": PenaltyUpdate, "none": NoConstraintUpdate}


def evaluate(trainer: Trainer, episodes: int, seed: int) -> dict[str, dict]:
    model, config = trainer.model.eval(), trainer.config
    out = {}
    for env_id in config.env.eval_ids:
        for name, ctrl in (("alone", PolicyController(model, config.gate, "actor")), ("gated", GatedController(model, config.gate))):
            records: list = []

            def wrapped(obs, ctrl=ctrl, records=records):
                action, record = ctrl(obs)
                records.append(record[:, 0])
                return action, record

            eps = rollout_policy(wrapped, env_id, episodes, seed)
            codes = torch.cat(records)
            out[f"{env_id}|{name}"] = {**summarize(eps), "policy_share": float((codes == CODE_POLICY).float().mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--eval-seed", type=int, default=None,
                        help="base seed of the evaluation episodes (default: the config's deploy.seed, the certification's)")
    parser.add_argument("-c", "--config", type=Path, default=None, help="config (default: the PointNav preset)")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench/constraints"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/constraints.json"))
    args = parser.parse_args()
    base = check(load(args.config, args.override))  # env ids, imports and names checked before any training
    data = load_data(base, args.config)  # the same data for every seed (run.seed does not touch it)
    eval_seed = base.deploy.seed if args.eval_seed is None else args.eval_seed
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            config = load(args.config, [*args.override, f"run.seed={seed}"])
            trainer = Trainer(config, data, args.runs / f"{variant}_s{seed}", update_class=VARIANTS[variant])
            trainer.run()
            for key, s in evaluate(trainer, args.episodes, eval_seed).items():
                env_id, mode = key.split("|")
                rows.append({"variant": variant, "seed": seed, "env": env_id.split("/")[-1], "controller": mode, **s})
                print(rows[-1], flush=True)
    write_json(args.out, {"machine": machine(), "episodes": args.episodes, "eval_seed": eval_seed, "rows": rows})
    cols = ["variant", "seed", "env", "controller", "success_rate", "accident_rate", "mean_cost", "mean_return",
            "mean_length", "policy_share"]
    print(markdown_table(cols, [[f"{r[c]:.3f}" if isinstance(r[c], float) else r[c] for c in cols] for r in rows]))


if __name__ == "__main__":
    main()
