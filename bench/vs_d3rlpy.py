"""Plain CQL on safecritic's pieces side by side with d3rlpy 2.8.1's CQL, same data, same hyperparameters, one run.

    python bench/vs_d3rlpy.py --pairs 5 --pair-updates 200 --updates 10000 --episodes 200

Ours is bench/plain_cql.py: CQL(H) with a tanh-Gaussian SAC actor and automatic entropy
tuning, built from the product's critic, CQL terms, fused Adam and batches (the product's
own actor is no longer a SAC actor, so the comparison at d3rlpy's hyperparameters is built
there). d3rlpy pins gymnasium 1.0.0, so it lives in its own virtual environment (created on
first use under runs/bench/d3rlpy-venv with torch==2.13.0 and d3rlpy==2.8.1) and runs
as a worker process (bench/d3rlpy_worker.py) fed the PointNav training split as an
MDPDataset. Speed is measured pair by pair, alternating ours and theirs on the same
machine in the same minutes (ours in the trained precision, bf16 autocast where the CPU has
it, and in fp32, d3rlpy's arithmetic); d3rlpy's time is split into batch sampling and the
algorithm update (d3rlpy logs the same split), and the ratio is reported against both.
After each pair the machine's fp32 and bf16 matmul peaks are measured (2048², 1 s each), so
the ratio can be read against what sets it: the host's bf16/fp32 peak ratio and each side's
fraction of its arithmetic's peak (d3rlpy's FLOPs counted as ours: the same algorithm and sizes).
Then both train on to the same number of updates and their deterministic policies
(ours: tanh of the actor's mean; theirs: save_policy's TorchScript) run the same MuJoCo episodes;
both policies are saved as TorchScript in --work (bench/quality.py rolls them out in every engine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, matmul_peak, scripted_policy, write_json  # noqa: E402
from plain_cql import D3RLPY_HP, PlainCQL  # noqa: E402
from steps import gflop_of, make_step  # noqa: E402

from safecritic.pipeline import load  # noqa: E402
from safecritic.controller.evaluation import rollout_policy  # noqa: E402
from safecritic.critics.cpu import use_bf16  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402
from safecritic.envs.rollout import summarize  # noqa: E402

# The shared hyperparameters: d3rlpy's CQL defaults (REFERENCES.md) with a fixed alpha; d3rlpy's
# worker gets this dict, ours (bench/plain_cql.py) the same. d3rlpy's CQL backs up
# Q(s', tanh(mu(s'))) without entropy (soft_q_backup=False, its default); so does ours.
HP = dict(D3RLPY_HP)


def ensure_venv(path: Path) -> Path:
    """The d3rlpy environment's python; made on first use. A marker file says the installs finished,
    so an environment left half-made by an interrupted install is completed, not used."""
    python, done = path / "bin" / "python", path / ".safecritic-bench-installed"
    if not done.exists():
        print(f"creating {path} with torch==2.13.0 and d3rlpy==2.8.1 ...", flush=True)
        if not python.exists():
            venv.create(path, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "d3rlpy==2.8.1"], check=True)
        done.write_text("torch==2.13.0 d3rlpy==2.8.1\n")
    return python


def export_dataset(data, path: Path) -> None:
    """The training split as MDPDataset arrays (episodes are contiguous and end in terminal or timeout)."""
    tr = data.train
    np.savez(path, observations=tr.obs.numpy(), actions=tr.act.numpy(), rewards=tr.rew.numpy(),
             terminals=tr.terminal.numpy(), timeouts=tr.timeout.numpy())


class D3rlpyWorker:
    def __init__(self, python: Path, data: Path, hp: dict | None = None) -> None:
        worker = Path(__file__).resolve().parent / "d3rlpy_worker.py"
        self.proc = subprocess.Popen([str(python), str(worker), str(data), json.dumps(hp or HP)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the d3rlpy worker exited; run it by hand to see why")
        return json.loads(line)

    def call(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, default=None,
                        help="config whose dataset and env both learn from (default: packaged PointNav)")
    parser.add_argument("--pairs", type=int, default=5,
                        help="timed pairs: ours (bf16/fp32) then d3rlpy, --pair-updates each; the ratio is their median")
    parser.add_argument("--pair-updates", type=int, default=200, help="updates per side in each timed pair")
    parser.add_argument("--updates", type=int, default=10000, help="total updates of each before evaluation")
    parser.add_argument("--episodes", type=int, default=200, help="MuJoCo episodes per trained policy (return, success, accidents)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="our training precision for the trained model (fp32 is always timed beside it)")
    parser.add_argument("--venv", type=Path, default=Path("runs/bench/d3rlpy-venv"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench/vs_d3rlpy"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/vs_d3rlpy.json"))
    parser.add_argument("--seed", type=int, default=HP["seed"], help="seed of both learners (quality over seeds)")
    args = parser.parse_args()
    HP["seed"] = args.seed
    args.work.mkdir(parents=True, exist_ok=True)

    python = ensure_venv(args.venv)
    config = load(args.config)
    data = load_offline_data(config.data)
    export_dataset(data, args.work / "pointnav_train.npz")
    theirs = D3rlpyWorker(python, args.work / "pointnav_train.npz")
    ours_model = PlainCQL(data, HP, args.precision)
    step = make_step(ours_model)
    # The same update in fp32 (d3rlpy's arithmetic), timed in the same pairs; a separate
    # model, so the trained-and-evaluated one above sees exactly `updates` updates.
    fp32_step = make_step(PlainCQL(data, HP, "fp32"))
    torch.set_num_threads(HP["threads"])
    for _ in range(10):  # warm-up
        step()
        fp32_step()
    theirs.call("update 10")
    gflop = gflop_of(fp32_step)  # one more update of the fp32 twin, which is only ever timed
    ours_peak = "bf16" if use_bf16(args.precision) else "fp32"

    def timed(fn) -> float:
        start = time.perf_counter()
        for _ in range(args.pair_updates):
            fn()
        return args.pair_updates / (time.perf_counter() - start)

    pairs = []
    for i in range(args.pairs):
        ours = timed(step)
        ours_fp32 = timed(fp32_step)
        t = theirs.call(f"update {args.pair_updates}")
        pair = {"ours_per_s": ours, "ours_fp32_per_s": ours_fp32, "theirs_per_s": args.pair_updates / t["seconds"],
                "theirs_update_only_per_s": args.pair_updates / t["update_seconds"]}
        pair["ratio"] = pair["ours_per_s"] / pair["theirs_per_s"]
        pair["ratio_fp32"] = pair["ours_fp32_per_s"] / pair["theirs_per_s"]
        pair["ratio_vs_update_only"] = pair["ours_per_s"] / pair["theirs_update_only_per_s"]
        peak = {"fp32": matmul_peak(HP["threads"], 1.0), "bf16": matmul_peak(HP["threads"], 1.0, dtype=torch.bfloat16)}
        pair.update(peak_fp32_gflops=peak["fp32"], peak_bf16_gflops=peak["bf16"], peak_ratio=peak["bf16"] / peak["fp32"],
                    ours_fraction_of_peak=ours * gflop / peak[ours_peak],
                    theirs_fraction_of_fp32_peak=pair["theirs_per_s"] * gflop / peak["fp32"])
        pairs.append(pair)
        print(f"pair {i + 1}: ours {ours:.1f}/s ({args.precision}), ours fp32 {ours_fp32:.1f}/s, d3rlpy "
              f"{pair['theirs_per_s']:.1f}/s ({pair['theirs_update_only_per_s']:.1f}/s without batch sampling): "
              f"x{pair['ratio']:.2f}, fp32 x{pair['ratio_fp32']:.2f}; matmul peaks fp32 {peak['fp32']:.0f}, bf16 "
              f"{peak['bf16']:.0f} GFLOP/s (x{pair['peak_ratio']:.2f}): ours at {pair['ours_fraction_of_peak']:.0%} of "
              f"the {ours_peak} peak, d3rlpy at {pair['theirs_fraction_of_fp32_peak']:.0%} of the fp32 peak", flush=True)

    done = 10 + args.pairs * args.pair_updates  # updates of `step`'s model so far
    remaining = max(0, args.updates - done)
    print(f"training both to {args.updates} updates ...", flush=True)
    start = time.perf_counter()
    for _ in range(remaining):
        step()
    # Training time of each trained model: its timed pairs plus the updates after them (the
    # 10 warm-up updates are not timed); after the pairs alone, it would read ~0 whenever the
    # pairs already reach --updates.
    ours_train_s = time.perf_counter() - start + sum(args.pair_updates / p["ours_per_s"] for p in pairs)
    t = theirs.call(f"update {remaining}")
    theirs_train_s = t["seconds"] + sum(args.pair_updates / p["theirs_per_s"] for p in pairs)
    policy_path = (args.work / "d3rlpy_policy.pt").resolve()
    theirs.call(f"save {policy_path}")
    theirs.close()
    ours_policy_path = (args.work / "plain_cql_policy.pt").resolve()  # for bench/quality.py
    torch.jit.save(torch.jit.script(ours_model.policy()), str(ours_policy_path))

    env_id = config.env.id
    ours_eval = summarize(rollout_policy(ours_model.policy(), env_id, args.episodes, 1000))
    theirs_eval = summarize(rollout_policy(scripted_policy(policy_path), env_id, args.episodes, 1000))
    med = {k: statistics.median(p[k] for p in pairs) for k in pairs[0]}
    result = {"machine": machine(), "hyperparameters": HP, "precision": args.precision, "d3rlpy": theirs.info,
              "ours": "bench/plain_cql.py (CQL(H) + SAC actor on the product's critic, CQL terms, fused Adam, batches)",
              "gflop_per_update": gflop, "ours_peak": ours_peak, "pairs": pairs, "median": med,
              "updates": args.updates, "updates_after_pairs": remaining,
              "ours_train_seconds": ours_train_s, "theirs_train_seconds": theirs_train_s,
              "evaluation": {"safecritic CQL": ours_eval, "d3rlpy CQL": theirs_eval}, "d3rlpy_policy": str(policy_path),
              "ours_policy": str(ours_policy_path)}
    write_json(args.out, result)
    print(markdown_table(
        ["", "updates/s (median of pairs)", "return", "success", "accident rate"],
        [[f"safecritic CQL ({args.precision}; fp32: {med['ours_fp32_per_s']:.1f}/s)", f"{med['ours_per_s']:.1f}", f"{ours_eval['mean_return']:.2f}",
          f"{ours_eval['success_rate']:.1%}", f"{ours_eval['accident_rate']:.1%}"],
         ["d3rlpy 2.8.1 CQL", f"{med['theirs_per_s']:.1f} ({med['theirs_update_only_per_s']:.1f} update only)",
          f"{theirs_eval['mean_return']:.2f}", f"{theirs_eval['success_rate']:.1%}", f"{theirs_eval['accident_rate']:.1%}"]],
    ))
    print(f"update-rate ratio ours/theirs: x{med['ratio']:.2f} ({args.precision}), x{med['ratio_fp32']:.2f} (fp32), "
          f"x{med['ratio_vs_update_only']:.2f} against d3rlpy's update alone")


if __name__ == "__main__":
    main()
