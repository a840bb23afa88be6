"""Runs inside the d3rlpy virtual environment (made by bench/vs_d3rlpy.py); never imports safecritic.

Reads a dataset (.npz) and hyperparameters (JSON), builds d3rlpy's CQL (or, with params["algo"],
its BCQ, BEAR or BC), then obeys one command per line on stdin and answers one JSON line on stdout:

    update K     -> K updates; {"seconds": total, "sample_seconds": ..., "update_seconds": ...}
    save PATH    -> d3rlpy's save_policy(PATH) (TorchScript); {"saved": PATH}
    quit
"""

import json
import sys
import time

import numpy as np
import torch


def build_algo(d3rlpy, params: dict):
    """d3rlpy's algorithm `params["algo"]` (default cql). CQL gets bench/plain_cql.py's shared
    hyperparameters; BCQ, BEAR and BC keep d3rlpy's own defaults but for the network width, batch
    size, discount, the candidate actions per state (ours: 10; d3rlpy's 100 cost BCQ 426 s for 1500
    updates on PointNav) and BEAR's warm-up, scaled to the budget (its 40000 BC steps assume 1M)."""
    encoder = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=params["hidden"])
    scaler = d3rlpy.preprocessing.StandardObservationScaler()
    algo = params.get("algo", "cql")
    shared = dict(batch_size=params["batch_size"], observation_scaler=scaler)
    if algo == "bc":
        return d3rlpy.algos.BCConfig(encoder_factory=encoder, **shared).create(device="cpu:0")
    q_learning = dict(actor_encoder_factory=encoder, critic_encoder_factory=encoder, gamma=params["gamma"],
                      tau=params["tau"], n_critics=params["critics"], **shared)
    if algo == "bcq":
        return d3rlpy.algos.BCQConfig(imitator_encoder_factory=encoder, n_action_samples=params["samples"],
                                      **q_learning).create(device="cpu:0")
    if algo == "bear":
        return d3rlpy.algos.BEARConfig(imitator_encoder_factory=encoder, warmup_steps=params.get("warmup", 40000),
                                       n_action_samples=params["samples"], **q_learning).create(device="cpu:0")
    if algo != "cql":
        raise SystemExit(f"unknown algo {algo!r}: cql, bcq, bear or bc")
    return d3rlpy.algos.CQLConfig(
        actor_learning_rate=params["actor_lr"], critic_learning_rate=params["critic_lr"],
        temp_learning_rate=params["temp_lr"], alpha_learning_rate=0.0,  # fixed alpha
        initial_temperature=params["temperature"], initial_alpha=1.0, conservative_weight=params["alpha"],
        n_action_samples=params["samples"],
        soft_q_backup=False, max_q_backup=False,  # d3rlpy's defaults, named: Q(s', mean action), no entropy
        **q_learning,
    ).create(device="cpu:0")


def main() -> None:
    # d3rlpy logs to stdout; the protocol owns the real stdout, d3rlpy gets stderr.
    protocol, sys.stdout = sys.stdout, sys.stderr
    import d3rlpy

    data_path, params = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(params["threads"])
    d3rlpy.seed(params["seed"])
    data = np.load(data_path)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"], actions=data["actions"], rewards=data["rewards"],
        terminals=data["terminals"], timeouts=data["timeouts"],
    )
    algo = build_algo(d3rlpy, params)
    # What fit() does before its loop: fit the scalers, then build the networks.
    from d3rlpy.algos.utility import build_scalers_with_transition_picker

    build_scalers_with_transition_picker(algo, dataset)
    algo.build_with_dataset(dataset)
    print(json.dumps({"ready": True, "d3rlpy": d3rlpy.__version__, "torch": torch.__version__}), file=protocol, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "update":
            sample = update = 0.0
            for _ in range(int(cmd[1])):
                t0 = time.perf_counter()
                batch = dataset.sample_transition_batch(params["batch_size"])
                t1 = time.perf_counter()
                algo.update(batch)
                t2 = time.perf_counter()
                sample += t1 - t0
                update += t2 - t1
            print(json.dumps({"seconds": sample + update, "sample_seconds": sample, "update_seconds": update}), file=protocol, flush=True)
        elif cmd[0] == "save":
            algo.save_policy(cmd[1])
            print(json.dumps({"saved": cmd[1]}), file=protocol, flush=True)
        elif cmd[0] == "quit":
            return


if __name__ == "__main__":
    main()
