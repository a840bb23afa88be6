"""Which episodes should the gate imitate? Refit a trained run's pi_ref on a subset, keep the rest.

    python bench/reference_prior.py runs/pointnav --episodes successful --out runs/exp/ref_successful
    safecritic export runs/exp/ref_successful --out /tmp/ref_successful
    safecritic evaluate /tmp/ref_successful -o deploy.seed=5000 -o 'env.eval_ids=["safecritic/PointNav-v0"]' -o deploy.ablations=false

Copies RUN's config and checkpoint to OUT with the gate's reference prior pi_ref (gate.reference)
refitted by maximum likelihood on the chosen training episodes, everything else (critics,
actor, OOD detector and its threshold, pi_beta) unchanged: the gate's candidates and ranking
change and nothing else, so a comparison isolates whom the gate imitates. Subsets: all
(pi_beta's data), successful (terminated without any cost: the default's), cost_free (no cost,
timeouts included). `--start-share` draws that share of each batch from episode starts.
Writes OUT/reference_prior.json and prints each prior's NLL on the held-out test episodes.
docs/design-notes.md, "Whom the gate imitates", has the measured table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.configs.fileio import atomic_torch_save  # noqa: E402
from safecritic.controller.policies import MixturePrior  # noqa: E402
from safecritic.controller.training import RunPaths, adam, load_trained  # noqa: E402
from safecritic.controller.updates import Batch, blurred_batch, prior_step  # noqa: E402
from safecritic.envs.dataset import Transitions, episode_sums, load_offline_data, successful_episode_rows  # noqa: E402


def episode_rows(train: Transitions, which: str) -> torch.Tensor:
    """Bool mask of the rows of the chosen episodes."""
    if which == "all":
        return torch.ones(len(train), dtype=torch.bool)
    if which == "successful":
        return successful_episode_rows(train)
    if which == "successful_fast":  # the successful episodes with the higher reward per step (upper half)
        ok = episode_sums(train, successful_episode_rows(train))[0] > 0
        ret, inverse = episode_sums(train, train.rew)
        rate = ret / episode_sums(train, torch.ones(len(train)))[0]
        return (ok & (rate >= rate[ok].median()))[inverse]
    cost, inverse = episode_sums(train, train.cost)
    return (cost == 0)[inverse]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", choices=["all", "successful", "successful_fast", "cost_free"], default="successful")
    parser.add_argument("--start-share", type=float, default=0.0, help="share of each batch drawn from episode starts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config, model, state = load_trained(args.run_dir)
    if model.reference_prior is None:
        raise SystemExit(f"{args.run_dir} has no reference prior (policy.prior.fit_successful: false); nothing to refit")
    torch.set_num_threads(config.run.threads)
    data = load_offline_data(config.data)
    train = data.train
    rows_mask = episode_rows(train, args.episodes)
    keep = torch.nonzero(rows_mask).flatten()
    first = torch.ones(len(train), dtype=torch.bool)
    first[1:] = train.episode[1:] != train.episode[:-1]
    starts = torch.nonzero(first & rows_mask).flatten()
    with torch.no_grad():
        obs, act = model.normalize_obs(train.obs), model.to_unit_action(train.act)
    p = config.policy.prior
    torch.manual_seed(args.seed)
    prior = MixturePrior(obs.shape[1], train.act_dim, p.hidden, p.components)
    opt, g = adam(prior.parameters(), p.lr), torch.Generator().manual_seed(args.seed)
    n_start = int(round(args.start_share * p.batch_size))
    for _ in range(p.steps):
        idx = keep[torch.randint(0, len(keep), (p.batch_size,), generator=g)]
        if n_start:
            idx[:n_start] = starts[torch.randint(0, len(starts), (n_start,), generator=g)]
        if p.blurs_reference:  # as the run fits it (the config's blur)
            batch = blurred_batch(model, train.obs, act, idx, p.reference_noise_entries, p.reference_noise_std, g)
        else:
            batch = Batch(obs[idx], act[idx], None, None, None, None)
        prior_step(prior, batch, opt)
    src, dst = RunPaths(args.run_dir), RunPaths(args.out)
    dst.root.mkdir(parents=True, exist_ok=True)
    shutil.copy(src.config, dst.config)
    state["model"].update({f"reference_prior.{k}": v for k, v in prior.state_dict().items()})
    atomic_torch_save(dst.checkpoint, state)
    # How each pi_ref fits the held-out episodes it was meant to imitate, and all of them.
    test = data.test
    rows = []
    if len(test):
        ok = successful_episode_rows(test)
        with torch.no_grad():
            x, a = model.normalize_obs(test.obs), model.to_unit_action(test.act)
            for name, net in (("refitted pi_ref", prior), ("the run's pi_ref", model.reference_prior), ("pi_beta", model.prior)):
                nll = -net.log_prob(x, a)
                rows.append({"prior": name, "test_nll_successful": float(nll[ok].mean()), "test_nll_all": float(nll.mean())})
    write_json(dst.root / "reference_prior.json", {
        "machine": machine(), "run_dir": str(args.run_dir), "episodes": args.episodes, "start_share": args.start_share,
        "reference_noise": {"entries": p.reference_noise_entries, "std": p.reference_noise_std},
        "fitted_episodes": int(first[rows_mask].sum()), "fitted_transitions": len(keep), "test_nll": rows})
    print(markdown_table(["prior", "test NLL, successful episodes", "test NLL, all episodes"],
                         [[r["prior"], f"{r['test_nll_successful']:.3f}", f"{r['test_nll_all']:.3f}"] for r in rows]))
    print(f"{args.out}: pi_ref refitted on {args.episodes} episodes ({int(first[rows_mask].sum())} episodes, "
          f"{len(keep)} transitions, start share {args.start_share}); export it with: safecritic export {args.out}")


if __name__ == "__main__":
    main()
