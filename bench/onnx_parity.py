"""ONNX vs TorchScript: the exported controller.onnx against the controller.pt beside it, on
dataset observations and fuzzed ones, and their batch-1 latency.

    python bench/onnx_parity.py runs/pointnav [runs/panda_reach ...] --observations 10000 \
        --out runs/bench/onnx_parity.json

Each run is exported afresh (`export --onnx`, into RUN/onnx_parity/artifact: the run's own artifact
is left alone). Half the observations are the run's held-out and calibration rows, half come from
deploy/onnx_export.fuzzed_observations with another seed than the export's own check (near the
data, 20 std away, entries of 1e4-3e38, exact zeros, NaN / +inf / -inf / mixed). The reference is the
TorchScript file as a robot runs it (deploy/runtime.load: hash-checked, frozen); the ONNX file
runs in onnxruntime (CPU, one thread). Per group: max abs diff of the actions and of each record
field, the same over max(1, |value|), code disagreements and whether the NaN positions match.
Latency: batch 1, one thread, timed in alternating blocks (bench/latency.py), onnxruntime's
session.run (numpy in and out, as the C++ API would be called) against the runtime's act().
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402
from latency import interleaved_percentiles  # noqa: E402

from safecritic.controller.gate import RECORD_FIELDS  # noqa: E402
from safecritic.deploy.export import PARITY_TOLERANCE, export_run  # noqa: E402
from safecritic.deploy.onnx_export import (FUZZ_DECISIONS_ONLY, FUZZ_KINDS, RECORD_TOLERANCE, OnnxController,  # noqa: E402
                                           fuzz_kind_of_rows, fuzzed_observations)
from safecritic.deploy.runtime import load  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402

BENCH_FUZZ_SEED = 1  # not the export's (0): rows its own check has not seen


def observation_sets(run_dir: Path, total: int) -> tuple[np.ndarray, list[str]]:
    """`total` observations (half the run's held-out + calibration rows, half fuzzed) and each one's group."""
    from safecritic.controller.training import load_trained

    config, _, _ = load_trained(run_dir)
    data = load_offline_data(config.data)
    rows = torch.cat([data.test.obs, data.calib.obs]).float()
    n_data = min(total // 2, len(rows))
    real = rows[torch.linspace(0, len(rows) - 1, n_data).long()]
    fuzzed = fuzzed_observations(rows, total - n_data, seed=BENCH_FUZZ_SEED)
    groups = ["dataset"] * n_data + fuzz_kind_of_rows(total - n_data)
    return torch.cat([real, fuzzed]).numpy(), groups


def compare(ref: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> dict:
    """Per-field differences of one group of rows (NaN entries, equal on both sides, count as 0)."""
    (a1, r1), (a2, r2) = ref, other
    with np.errstate(invalid="ignore"):  # inf - inf (overflowed huge rows) -> NaN -> 0, as export.parity
        diff = np.abs(np.nan_to_num(r1 - r2, nan=0.0))
    scaled = diff / np.maximum(1.0, np.abs(np.nan_to_num(r1, nan=0.0, posinf=0.0, neginf=0.0)))
    return {
        "rows": int(len(a1)),
        "action_max_abs_diff": float(np.abs(a1 - a2).max()),
        "record_max_abs_diff": {f: float(diff[:, i].max()) for i, f in enumerate(RECORD_FIELDS)},
        "record_max_scaled_diff": {f: float(scaled[:, i].max()) for i, f in enumerate(RECORD_FIELDS)},
        "code_disagreements": int((r1[:, 0] != r2[:, 0]).sum()),
        "nan_positions_equal": bool(np.array_equal(np.isnan(r1), np.isnan(r2))),
        "codes": {str(c): int((r1[:, 0] == c).sum()) for c in range(4)},
    }


def bench_run(run_dir: Path, total: int, calls: int) -> dict:
    artifact = run_dir / "onnx_parity" / "artifact"
    start = time.perf_counter()
    manifest = export_run(run_dir, artifact, onnx=True)
    export_s = time.perf_counter() - start
    obs, groups = observation_sets(run_dir, total)
    runtime = load(artifact, threads=1)
    session = OnnxController((artifact / "controller.onnx").read_bytes(), threads=1)
    ref, out = runtime.act(obs), session.run(obs)
    group_names = ["dataset", *FUZZ_KINDS]
    mask = {g: np.array([x == g for x in groups]) for g in group_names}
    per_group = {g: compare((ref[0][m], ref[1][m]), (out[0][m], out[1][m])) for g, m in mask.items() if m.any()}
    overall = compare(ref, out)
    # The export's rule (deploy/onnx_export.export_checked) on these rows.
    judged = all(max(g["record_max_scaled_diff"].values()) <= RECORD_TOLERANCE and g["nan_positions_equal"]
                 for name, g in per_group.items() if name not in FUZZ_DECISIONS_ONLY)
    judged = judged and overall["action_max_abs_diff"] <= PARITY_TOLERANCE and overall["code_disagreements"] == 0
    inputs = [obs[i : i + 1] for i in range(min(1000, len(obs))) if groups[i] == "dataset"] or [obs[:1]]
    latency = interleaved_percentiles({
        "onnxruntime session.run": session.run,
        "TorchScript runtime act()": runtime.act,
        "TorchScript module (frozen)": lambda x: runtime.module(torch.from_numpy(x)),
    }, inputs, calls)
    return {"run_dir": str(run_dir), "variant": manifest["variant"]["name"], "export_s": export_s,
            "onnx": manifest["onnx"], "onnx_bytes": (artifact / "controller.onnx").stat().st_size,
            "overall": overall, "groups": per_group, "passes_export_rule": judged, "latency": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="trained runs (exported afresh with --onnx)")
    parser.add_argument("--observations", type=int, default=10_000, help="per run: half dataset, half fuzzed")
    parser.add_argument("--calls", type=int, default=3000, help="timed batch-1 calls per controller")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/onnx_parity.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [bench_run(run_dir, args.observations, args.calls) for run_dir in args.run_dirs]
    write_json(args.out, {"machine": machine(), "tolerance": PARITY_TOLERANCE, "runs": results})
    for r in results:
        print(f"\n{r['run_dir']} ({r['variant']}): {r['overall']['rows']} observations, export {r['export_s']:.1f} s, "
              f"opset {r['onnx']['opset']}, {r['onnx_bytes'] / 1e3:.0f} kB")
        rows = []
        for name, g in [*r["groups"].items(), ("all", r["overall"])]:
            rows.append([name, g["rows"], f"{g['action_max_abs_diff']:.1e}",
                         *[f"{g['record_max_abs_diff'][f]:.1e} / {g['record_max_scaled_diff'][f]:.1e}" for f in RECORD_FIELDS[1:]],
                         g["code_disagreements"], "yes" if g["nan_positions_equal"] else "NO",
                         "/".join(str(g["codes"][str(c)]) for c in range(4))])
        print(markdown_table(["rows", "n", "action abs", *[f"{f} abs / scaled" for f in RECORD_FIELDS[1:]],
                              "code diffs", "NaN pos equal", "codes 0/1/2/3"], rows))
        print(f"export rule (x max(1, |v|): records <= {RECORD_TOLERANCE:g} + NaN positions except on "
              f"{' and '.join(FUZZ_DECISIONS_ONLY)} rows, actions + codes <= {PARITY_TOLERANCE:g} on all): "
              f"{'pass' if r['passes_export_rule'] else 'FAIL'}")
        print(markdown_table(["batch 1, 1 thread", "p50 µs", "p99 µs", "mean µs"],
                             [[n, f"{v['p50_us']:.0f}", f"{v['p99_us']:.0f}", f"{v['mean_us']:.0f}"]
                              for n, v in r["latency"].items()]))


if __name__ == "__main__":
    main()
