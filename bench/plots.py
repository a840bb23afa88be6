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
    fig, ax = plt.subplots(figsize=(6, 2.6))
    rows = data["rows"]
    names = [r["env_id"].split("/")[-1] for r in rows]
    y = range(len(rows))
    ax.barh([i - 0.25 for i in y], [r["raw_steps_per_s"] for r in rows], height=0.25, label="raw simulator")
    ax.barh(list(y), [r["controller_steps_per_s"] for r in rows], height=0.25, label=f"controller, {data['envs']} envs")
    ax.barh([i + 0.25 for i in y], [r["batch1_steps_per_s"] for r in rows], height=0.25, label="controller, 1 env")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("env steps per second (1 process)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "eval_loop.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=Path("runs/bench"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("throughput", throughput), ("vs_d3rlpy", versus), ("latency", latency), ("eval_loop", eval_loop)):
        data = _load(args.bench / f"{name}.json")
        if data is not None:
            fn(data, args.out)
            print(f"wrote {args.out}/{name}.png")


if __name__ == "__main__":
    main()
