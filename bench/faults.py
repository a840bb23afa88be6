"""The gate and its parts under faults: what the accident critic and the OOD detector each
contribute when the world is not the one the data came from.

    python bench/faults.py runs/pointnav --episodes 200 --out runs/bench/faults.json

The certification report's ablation table is measured on nominal episodes only. This script
rolls out the same exported files (the gated controller and its `accident_only`, `ood_only`
and `gate_off` ablations, the last the actor alone, all written by `safecritic run` into
RUN_DIR) under each fault of `--fault` (env.faults keys; envs/faults.py), in every engine of
the run's config, on the certification's episode seeds. Per cell: success, accidents,
return, and how often the OOD score flagged the policy's proposal, the accident critic
vetoed it, and the gate fell back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.configs.errors import ConfigError  # noqa: E402
from safecritic.configs.loader import config_from_data  # noqa: E402
from safecritic.configs.schema import Config  # noqa: E402
from safecritic.deploy.evaluate import evaluate_artifacts, summarize_env  # noqa: E402
from safecritic.controller.gate import CODE_FALLBACK  # noqa: E402
from safecritic.deploy.report import success_cell  # noqa: E402
from safecritic.pipeline import read_manifest  # noqa: E402

CONTROLLERS = {"gated (full)": "artifact", "accident_only": "ablations/accident_only",
               "ood_only": "ablations/ood_only", "gate_off": "ablations/gate_off"}
# Mild to severe, one mechanism each: sensing (noise, delay, dropout), actuation, dynamics.
DEFAULT_FAULTS = ["none", "obs_noise_std=0.05", "obs_noise_std=0.15", "obs_delay_steps=2", "sensor_dropout=0.3",
                  "action_scale=0.5", "mass_scale=3", "damping_scale=0.3"]


def faulted_config(base: Config, fault: str, episodes: int) -> Config:
    """The run's config with one fault (KEY=VALUE of env.faults, or 'none') and the episode count,
    through the CLI's override parser and messages."""
    overrides = [f"deploy.episodes={episodes}"] + ([] if fault == "none" else [f"env.faults.{fault}"])
    try:
        return config_from_data(base.model_dump(mode="json"), overrides, "the run's config")
    except ConfigError as exc:
        raise SystemExit(f"--fault {fault!r}: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run that went through `safecritic run` (has artifact/ and ablations/)")
    parser.add_argument("--fault", action="append", help=f"KEY=VALUE of env.faults, or none (repeatable; default: {' '.join(DEFAULT_FAULTS)})")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per engine, controller and fault")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/faults.json"))
    args = parser.parse_args()
    dirs = {name: args.run_dir / sub for name, sub in CONTROLLERS.items()}
    missing = [str(d) for d in dirs.values() if not (d / "manifest.json").is_file()]
    if missing:
        raise SystemExit(f"missing exported controllers: {', '.join(missing)}; `safecritic run` (with deploy.ablations: true) writes them")
    base = Config.model_validate(read_manifest(dirs["gated (full)"])["config"])
    configs = {fault: faulted_config(base, fault, args.episodes) for fault in args.fault or DEFAULT_FAULTS}  # refuse typos first
    rows = []
    for fault, config in configs.items():
        results = evaluate_artifacts(list(dirs.values()), config)
        for name, folder in dirs.items():
            for env_id, ev in results[str(folder)].items():
                s = summarize_env(ev)
                rows.append({"fault": fault, "controller": name, "env_id": env_id, "episodes": s["episodes"],
                             "success_rate": s["success_rate"], "reports_success": s["reports_success"],
                             "accident_rate": s["accident_rate"],
                             "accident_rate_upper": s["accident_rate_upper"], "mean_return": s["mean_return"],
                             "ood_alarm_rate": s["ood_alarm_rate"], "cost_veto_rate": s["cost_veto_rate"],
                             "fallback_rate": s["decision_fractions"][str(CODE_FALLBACK)]})
                r = rows[-1]
                print(f"{fault:<20} {name:<14} {env_id:<30} success {success_cell(r):>6}  accidents "
                      f"{r['accident_rate']:6.1%}  return {r['mean_return']:6.2f}", flush=True)
    write_json(args.out, {"machine": machine(), "run_dir": str(args.run_dir), "episodes": args.episodes,
                          "seed": base.deploy.seed, "rows": rows})
    print(markdown_table(
        ["fault", "controller", "engine", "success", "accidents", "return", "proposal flagged OOD", "proposal vetoed (Q_C)", "fallback"],
        [[r["fault"], r["controller"], r["env_id"].split("/")[-1], success_cell(r), f"{r['accident_rate']:.1%}",
          f"{r['mean_return']:.2f}", f"{r['ood_alarm_rate']:.1%}", f"{r['cost_veto_rate']:.1%}", f"{r['fallback_rate']:.1%}"]
         for r in rows]))


if __name__ == "__main__":
    main()
