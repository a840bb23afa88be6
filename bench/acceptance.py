"""The speed bars at a glance: the JSON the timing benches wrote, against DESIGN.md's "Numbers".

    python bench/acceptance.py --vs-d3rlpy runs/bench/vs_d3rlpy*.json --latency runs/bench/latency*.json \\
        --eval-loop runs/bench/eval_loop*.json --throughput runs/bench/throughput.json

It measures nothing itself; it reads the files that bench/vs_d3rlpy.py, latency.py, eval_loop.py
and throughput.py wrote and prints one row per bar with every run's figure, how many runs met
the bar and the worst margin (the figure over its bound, or the bound over the figure for an
upper bound: >= 1 is met; bench/plots.py draws every run's margin). Every run is listed because this VM's speed moves between
runs of the same script by up to ~30% (docs/benchmarks.md): a bar met once is not a margin.
The update-rate ratio counts only vs_d3rlpy runs with --min-pairs speed pairs; return after the
same number of updates only those that trained to --min-updates and rolled out --min-episodes,
one row per learner seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

# DESIGN.md, "Numbers this project is held to".
UPDATE_RATE_RATIO_MIN = 2.0  # CQL update rate vs d3rlpy's, same hyperparameters and data
LATENCY_P99_US_MAX = 1000.0  # gated controller, batch 1
LATENCY_OVER_FLOOR_MAX = 3.0  # gated p99 / the actor alone's p99 (gate_off; the bare actor before 7238dc0)
EVAL_LOOP_RATIO_MIN = 0.5  # env steps/s with the controller in the loop / the raw step rate


# A key each kind of bench JSON has and the others lack: a file given to the wrong option is named, not a KeyError.
KINDS = {"vs_d3rlpy": ("pairs", "bench/vs_d3rlpy.py"), "latency": ("gated_over_floor_p99", "bench/latency.py"),
         "eval_loop": ("envs", "bench/eval_loop.py"), "throughput": ("matmul_peak_gflops", "bench/throughput.py")}


def _read(paths: list[Path], kind: str) -> list[tuple[str, dict[str, Any]]]:
    key, script = KINDS[kind]
    out = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            sys.exit(f"{path}: cannot read it ({exc.strerror}); run {script} first, or pass the file it wrote (--out)")
        except ValueError as exc:
            sys.exit(f"{path}: not JSON ({exc}); pass the file {script} wrote")
        if not isinstance(data, dict) or key not in data:
            sys.exit(f"{path} was not written by {script} (no {key!r}); pass it to the option of the script that wrote it")
        out.append((path.name, data))
    return out


def _row(bar: str, bound: float, at_least: bool, figures: list[tuple[str, float]], fmt: str, target: str,
         is_bar: bool = True) -> dict[str, Any]:
    """One bar: every run's figure and its margin, the figure over the bound (or the bound over the
    figure for an upper bound), so that a margin >= 1 is met whichever way the bar points."""
    margins = [(v / bound if at_least else bound / v) for _, v in figures]
    met = [m >= 1.0 for m in margins]
    return {"bar": bar, "is_bar": is_bar, "label": bar if is_bar else f"({bar})", "target": target,
            "runs": [{"file": f, "value": v, "margin": m} for (f, v), m in zip(figures, margins)],
            "shown": " / ".join(fmt.format(v) for _, v in figures) or "no run given",
            "met": bool(met) and all(met), "runs_met": f"{sum(met)} of {len(met)}",
            "worst_margin": min(margins) if margins else None}


def rate_runs(vs_d3rlpy, min_pairs: int) -> list[tuple[str, dict[str, Any]]]:
    """The vs_d3rlpy runs that measure the update rate: a run made for its return (one short pair) does not."""
    return [(name, d) for name, d in vs_d3rlpy if len(d["pairs"]) >= min_pairs]


def speed_rows(vs_d3rlpy, latency, eval_loop) -> list[dict[str, Any]]:
    """One row per bar; `vs_d3rlpy` holds the rate runs only (`rate_runs`)."""
    rows = []
    ratios = [(name, d["median"]["ratio"]) for name, d in vs_d3rlpy]
    ratio_target = f">= {UPDATE_RATE_RATIO_MIN}x"
    rows.append(_row("CQL update rate / d3rlpy's (median of a run's pairs)",
                     UPDATE_RATE_RATIO_MIN, True, ratios, "{:.2f}x", ratio_target))
    pairs = [(name, p["ratio"]) for name, d in vs_d3rlpy for p in d["pairs"]]
    rows.append(_row("single pairs (not the bar)", UPDATE_RATE_RATIO_MIN, True,
                     pairs, "{:.2f}", ratio_target, is_bar=False))
    fp32 = [(name, d["median"]["ratio_fp32"]) for name, d in vs_d3rlpy]
    rows.append(_row("ours in fp32 (not the bar)", UPDATE_RATE_RATIO_MIN, True, fp32,
                     "{:.2f}x", ratio_target, is_bar=False))
    p99 = [(name, d["rows"]["gated controller"]["runtime"]["p99_us"]) for name, d in latency]
    rows.append(_row("gated controller p99, batch 1", LATENCY_P99_US_MAX, False, p99, "{:.0f}",
                     f"<= {LATENCY_P99_US_MAX:.0f} µs"))
    over = [(name, d["gated_over_floor_p99"]) for name, d in latency]
    rows.append(_row("gated p99 / the actor alone's p99 (gate_off)", LATENCY_OVER_FLOOR_MAX, False, over, "{:.2f}x",
                     f"<= {LATENCY_OVER_FLOOR_MAX}x"))
    engines = sorted({r["env_id"] for _, d in eval_loop for r in d["rows"]})
    for engine in engines:
        loop = [(name, r["ratio"]) for name, d in eval_loop for r in d["rows"] if r["env_id"] == engine]
        rows.append(_row(f"evaluation loop, {engine} ({', '.join(sorted({str(d['envs']) for _, d in eval_loop}))} envs)",
                         EVAL_LOOP_RATIO_MIN, True, loop, "{:.0%}", f">= {EVAL_LOOP_RATIO_MIN:.0%}"))
    return rows


def host_rows(vs_d3rlpy) -> list[dict[str, Any]]:
    """What set each rate ratio, for the rate runs that measured it (bench/vs_d3rlpy.py since the tenth
    stop): the host's bf16/fp32 matmul peak ratio and each side's fraction of its arithmetic's peak,
    medians over the run's pairs. The ratio is about their product (docs/benchmarks.md)."""
    return [{"file": name, "ratio": d["median"]["ratio"], "peak_ratio": d["median"]["peak_ratio"],
             "ours_fraction": d["median"]["ours_fraction_of_peak"], "ours_peak": d["ours_peak"],
             "theirs_fraction": d["median"]["theirs_fraction_of_fp32_peak"]}
            for name, d in vs_d3rlpy if "peak_ratio" in d["median"]]


def return_rows(vs_d3rlpy, min_updates: int, min_episodes: int) -> list[dict[str, Any]]:
    """Ours vs d3rlpy after the same updates, per learner seed (runs too short to judge are skipped)."""
    rows = []
    for name, d in vs_d3rlpy:
        ev = d["evaluation"]
        ours, theirs = ev["safecritic CQL"], ev["d3rlpy CQL"]
        if d["updates"] < min_updates or ours["episodes"] < min_episodes:
            continue
        rows.append({"file": name, "seed": d["hyperparameters"]["seed"], "updates": d["updates"],
                     "episodes": ours["episodes"], "ours": ours, "theirs": theirs})
    return rows


def throughput_rows(throughput) -> list[dict[str, Any]]:
    out = []
    for name, d in throughput:
        for r in d["rows"]:
            if "full update" in r["name"]:
                out.append({"file": name, "update": r["name"], "updates_per_s": r["updates_per_s"],
                            "fraction_of_peak": r["fraction_of_peak"]})
        breakdown = d.get("full_update_fp32_time_breakdown")
        if breakdown:
            out.append({"file": name, "update": "full update, fp32: time in matmuls (profiler)",
                        "matmul_share": breakdown["matmul_share"],
                        "largest_other_ops": [o["op"] for o in breakdown["top_other_ops"][:3]]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vs-d3rlpy", type=Path, nargs="*", default=[], help="bench/vs_d3rlpy.py outputs")
    parser.add_argument("--latency", type=Path, nargs="*", default=[], help="bench/latency.py outputs")
    parser.add_argument("--eval-loop", type=Path, nargs="*", default=[], help="bench/eval_loop.py outputs")
    parser.add_argument("--throughput", type=Path, nargs="*", default=[], help="bench/throughput.py outputs")
    parser.add_argument("--min-pairs", type=int, default=3, help="vs_d3rlpy runs with fewer speed pairs have no rate row")
    parser.add_argument("--min-updates", type=int, default=10000, help="vs_d3rlpy runs shorter than this have no return row")
    parser.add_argument("--min-episodes", type=int, default=100, help="... nor runs evaluated on fewer episodes")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/acceptance.json"))
    args = parser.parse_args()
    if not (args.vs_d3rlpy or args.latency or args.eval_loop or args.throughput):
        parser.error("name at least one bench JSON (e.g. --latency runs/bench/latency.json)")
    vs, lat, loop, thr = (_read(p, kind) for p, kind in ((args.vs_d3rlpy, "vs_d3rlpy"), (args.latency, "latency"),
                                                         (args.eval_loop, "eval_loop"), (args.throughput, "throughput")))

    rates = rate_runs(vs, args.min_pairs)
    speed = speed_rows(rates, lat, loop)
    print(markdown_table(["bar", "target", "every run", "met in", "worst margin"],
                         [[r["label"], r["target"], r["shown"], r["runs_met"],
                           "-" if r["worst_margin"] is None else f"{r['worst_margin']:.3f}"] for r in speed]))
    hosts = host_rows(rates)
    for h in hosts:
        print(f"{h['file']}: x{h['ratio']:.2f} with the host's bf16/fp32 matmul peak at x{h['peak_ratio']:.2f}, ours at "
              f"{h['ours_fraction']:.0%} of the {h['ours_peak']} peak, d3rlpy at {h['theirs_fraction']:.0%} of the fp32 peak")
    returns = return_rows(vs, args.min_updates, args.min_episodes)
    if returns:
        print()
        print(markdown_table(
            ["learner seed", "updates", "episodes", "ours: return / success / accidents", "d3rlpy: return / success / accidents"],
            [[r["seed"], r["updates"], r["episodes"],
              f"{r['ours']['mean_return']:.2f} / {r['ours']['success_rate']:.1%} / {r['ours']['accident_rate']:.1%}",
              f"{r['theirs']['mean_return']:.2f} / {r['theirs']['success_rate']:.1%} / {r['theirs']['accident_rate']:.1%}"]
             for r in returns]))
        ours = [r["ours"]["mean_return"] for r in returns]
        theirs = [r["theirs"]["mean_return"] for r in returns]
        print(f"mean return over {len(returns)} seed(s): ours {statistics.mean(ours):.2f}, d3rlpy {statistics.mean(theirs):.2f}"
              + (f" (seed spread, std: {statistics.stdev(ours):.2f} / {statistics.stdev(theirs):.2f})" if len(returns) > 1 else ""))
    flops = throughput_rows(thr)
    for r in flops:
        if "fraction_of_peak" in r:
            print(f"{r['update']}: {r['updates_per_s']:.1f} updates/s, {r['fraction_of_peak']:.0%} of the measured matmul peak")
        else:
            print(f"{r['update']}: {r['matmul_share']:.0%}; largest other ops: {', '.join(r['largest_other_ops'])}")
    write_json(args.out, {"machine": machine(), "speed": speed, "hosts": hosts, "returns": returns, "flop_rate": flops})


if __name__ == "__main__":
    main()
