"""PNG plots for docs/benchmarks.md from the JSON the other bench scripts wrote.

    python bench/plots.py --bench runs/bench --out docs/img

Each plot is drawn only when its JSON exists, so a partial bench run still plots.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _bars(ax, labels: list[str], values: list[float], fmt: str) -> None:
    bars = ax.barh(labels, values, color="#4C72B0")
    for bar, value in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt.format(value), va="center", fontsize=8)
    ax.invert_yaxis()


def throughput(data: dict, out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 3.2))
    rows = data["rows"]
    _bars(a, [r["name"] for r in rows], [r["updates_per_s"] for r in rows], "{:.0f}/s")
    a.set_xlabel("updates per second (2 threads)")
    _bars(b, [r["name"] for r in rows], [100 * r["fraction_of_peak"] for r in rows], "{:.0f}%")
    b.set_xlabel("achieved FLOP rate, % of matmul peak (same precision)")
    b.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=120)


def versus(data: dict, out: Path) -> None:
    pairs = data["pairs"]
    fig, ax = plt.subplots(figsize=(6, 3))
    x = range(1, len(pairs) + 1)
    ax.plot(x, [p["ours_per_s"] for p in pairs], "o-", label=f"safecritic CQL ({data.get('precision', 'auto')})")
    if "ours_fp32_per_s" in pairs[0]:
        ax.plot(x, [p["ours_fp32_per_s"] for p in pairs], "o--", label="safecritic CQL, fp32")
    ax.plot(x, [p["theirs_per_s"] for p in pairs], "s-", label="d3rlpy 2.8.1 CQL")
    ax.plot(x, [p["theirs_update_only_per_s"] for p in pairs], "s--", label="d3rlpy, update only")
    ax.set_xlabel("pair (alternating, same minutes)")
    ax.set_xticks(list(x))
    ax.set_ylabel("updates per second")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "vs_d3rlpy.png", dpi=120)


def latency(data: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 2.6))
    labels, p50, p99 = [], [], []
    for name, r in data["rows"].items():
        src = r["runtime"] or r["module"]
        labels.append(name + ("" if r["runtime"] else " (module)"))
        p50.append(src["p50_us"])
        p99.append(src["p99_us"])
    y = range(len(labels))
    ax.barh([i - 0.2 for i in y], p50, height=0.4, label="p50")
    ax.barh([i + 0.2 for i in y], p99, height=0.4, label="p99")
    ax.set_yticks(list(y), labels)
    ax.axvline(1000, color="red", linestyle=":", label="1 ms target")
    ax.set_xlabel("µs per call, batch 1, 1 thread")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)


def eval_loop(data: dict, out: Path) -> None:
    """Time per env step: the raw simulator's, and the controlled loop's split into its parts.

    The target (>= 50% of the raw rate) is a controlled step no longer than two raw ones: marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    rows = data["rows"]
    names = [r["env_id"].split("/")[-1] for r in rows]
    y = list(range(len(rows)))
    ax.barh([i - 0.2 for i in y], [r["raw_us_per_step"] for r in rows], height=0.35, label="raw simulator step")
    env = [r["env_us_per_step_in_loop"] for r in rows]
    ax.barh([i + 0.2 for i in y], env, height=0.35, label="in the loop: env steps and the rest")
    ax.barh([i + 0.2 for i in y], [r["controller_us_per_step"] for r in rows], left=env, height=0.35,
            label=f"in the loop: controller ({data['envs']} envs per call)")
    for i, r in zip(y, rows):
        ax.plot([2 * r["raw_us_per_step"]] * 2, [i - 0.4, i + 0.4], color="k", lw=1.2)
        ax.text(r["loop_us_per_step"], i + 0.2, f" {r['ratio']:.0%} of raw rate", va="center", fontsize=8)
    ax.plot([], [], color="k", lw=1.2, label="2 x raw step (the 50% target)")
    ax.set_yticks(y, names)
    ax.set_xlabel("µs per env step (1 process, 1 thread)")
    ax.set_xlim(0, 1.25 * max(max(2 * r["raw_us_per_step"], r["loop_us_per_step"]) for r in rows))
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    fig.tight_layout()
    fig.savefig(out / "eval_loop.png", dpi=120)


def faults(data: dict, out: Path) -> None:
    """Accident and success rates per fault, one group of bars per fault, one bar per controller."""
    rows = data["rows"]
    engines = list(dict.fromkeys(r["env_id"] for r in rows))
    names = list(dict.fromkeys(r["fault"] for r in rows))
    controllers = list(dict.fromkeys(r["controller"] for r in rows))
    fig, axes = plt.subplots(2, len(engines), figsize=(6.5 * len(engines), 6.4), sharex=True, squeeze=False)
    width = 0.8 / len(controllers)
    for col, env_id in enumerate(engines):
        cell = {(r["fault"], r["controller"]): r for r in rows if r["env_id"] == env_id}
        for row, (key, label) in enumerate((("accident_rate", "accident rate"), ("success_rate", "success rate"))):
            ax = axes[row][col]
            for j, name in enumerate(controllers):
                x = [i + (j - (len(controllers) - 1) / 2) * width for i in range(len(names))]
                ax.bar(x, [100 * cell[(f, name)][key] for f in names], width=width, label=name)
            ax.set_ylabel(f"{label}, %")
            ax.set_ylim(0, 100)
            if row == 0:
                ax.set_title(f"{env_id.split('/')[-1]}, {data['episodes']} episodes per bar")
        axes[1][col].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "faults.png", dpi=120)


def acceptance(data: dict, out: Path) -> None:
    """Every run's margin on every speed bar (bench/acceptance.py): >= 1 is met, whichever way the bar points."""
    rows = [r for r in data["speed"] if r["runs"]]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        margins = [run["margin"] for run in r["runs"]]
        ax.scatter(margins, [i] * len(margins), color="#4C72B0" if r["is_bar"] else "#A0A0A0", alpha=0.8, s=22)
    ax.axvline(1.0, color="red", linestyle=":", label="the bar")
    ax.set_yticks(range(len(rows)), [f"{r['label']} ({r['target']})" if r["is_bar"] else r["label"] for r in rows],
                  fontsize=7)
    ax.set_xlabel("margin per run: figure / bound (bound / figure for an upper bound); >= 1 is met", fontsize=9)
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "acceptance.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=Path("runs/bench"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("throughput", throughput), ("vs_d3rlpy", versus), ("latency", latency), ("eval_loop", eval_loop),
                     ("faults", faults), ("acceptance", acceptance)):
        data = _load(args.bench / f"{name}.json")
        if data is not None:
            fn(data, args.out)
            print(f"wrote {args.out}/{name}.png")


if __name__ == "__main__":
    main()
