"""How well the behaviour prior pi_beta fits the states where every episode begins (at rest).

    python bench/prior_fit.py runs/pointnav --steps 4000 8000 16000 32000 --out runs/bench/prior_fit.json

The gate ranks candidates by Q_R + beta log pi_beta, so a prior that rates "stand still"
above what the data did makes the controller creep or stall (docs/design-notes.md, "What
the gate's ranking rests on"). Scores the run's trained prior, then fresh priors of the
run's configured size fitted for each step count, on the held-out test episodes: NLL over
all states and over rest states, and how often the zero action out-rates the data's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.controller.policies import MixturePrior  # noqa: E402
from safecritic.controller.training import adam, load_trained  # noqa: E402
from safecritic.controller.updates import Batch, prior_step  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402


def fit_stats(prior: MixturePrior, obs: torch.Tensor, act: torch.Tensor, rest: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        log_w, mean, log_std = prior.params(obs)
        data = prior.log_density(log_w, mean, log_std, act.unsqueeze(0))[0]
        zero = prior.log_density(log_w, mean, log_std, torch.zeros_like(act).unsqueeze(0))[0]
    return {"test_nll": float(-data.mean()), "rest_nll": float(-data[rest].mean()),
            "rest_log_p_zero_median": float(zero[rest].median()), "rest_log_p_data_median": float(data[rest].median()),
            "rest_zero_preferred": float((zero[rest] > data[rest]).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[4000, 16000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/prior_fit.json"))
    args = parser.parse_args()
    config, model, _ = load_trained(args.run_dir)
    torch.set_num_threads(config.run.threads)
    data = load_offline_data(config.data)
    if not len(data.test):
        raise SystemExit("the run's data has no test episodes (data.test_fraction = 0): nothing held out to score")
    with torch.no_grad():
        train_obs, test_obs = model.normalize_obs(data.train.obs), model.normalize_obs(data.test.obs)
    rest = data.test.obs[:, 2:4].norm(dim=1) < 1e-6  # PointNav: velocity is observation entries 2-3
    rows = [{"prior": "the run's trained prior", "steps": config.policy.prior.steps,
             **fit_stats(model.prior, test_obs, data.test.act, rest)}]
    p = config.policy.prior
    torch.manual_seed(args.seed)
    prior = MixturePrior(train_obs.shape[1], data.train.act_dim, p.hidden, p.components)
    opt, g, done = adam(prior.parameters(), p.lr), torch.Generator().manual_seed(args.seed), 0
    for target in sorted(args.steps):
        while done < target:
            idx = torch.randint(0, len(train_obs), (p.batch_size,), generator=g)
            prior_step(prior, Batch(train_obs[idx], data.train.act[idx], None, None, None, None), opt)
            done += 1
        rows.append({"prior": "fresh", "steps": done, **fit_stats(prior, test_obs, data.test.act, rest)})
    table = markdown_table(
        ["prior", "steps", "test NLL", "rest-state NLL", "rest: median log p(0)", "rest: median log p(data)",
         "rest states where p(0) > p(data)"],
        [[r["prior"], r["steps"], f"{r['test_nll']:.2f}", f"{r['rest_nll']:.2f}", f"{r['rest_log_p_zero_median']:.2f}",
          f"{r['rest_log_p_data_median']:.2f}", f"{r['rest_zero_preferred']:.0%}"] for r in rows])
    write_json(args.out, {"machine": machine(), "run_dir": str(args.run_dir), "rest_states": int(rest.sum()), "rows": rows})
    print(f"{int(rest.sum())} rest states among {len(rest)} held-out test states")
    print(table)


if __name__ == "__main__":
    main()
