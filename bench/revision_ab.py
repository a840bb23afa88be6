"""The training update of two git revisions, timed side by side on this machine.

    python bench/revision_ab.py 44820c9 HEAD --blocks 12 --block 25

This VM's speed drifts by 15-30% within an hour, so "before" and "after" measured at
different times say little. Each revision is extracted (`git archive`) to a temporary
folder and runs in its own long-lived worker process (importing *that* tree's code);
the workers take turns timing blocks of `--block` critic-phase updates
(`Trainer.update_step`, exactly what training runs), so both meet the same machine
noise. After the warm-up both have made the same number of updates from the same seed;
the table says whether their parameters are then the same bits (a change meant to be
behaviour-neutral must show "yes"), or that they cannot be compared (the two revisions'
models have different parameter shapes).

Each worker imports only its own tree's code, so the revisions may have different APIs and
config schemas (e.g. 2f32c28, the last with controller/updates.py, against one with
controller/update.py): every worker builds `Trainer(config, data, run_dir)` and times
`Trainer.update_step()`, which both APIs have. A `-c` file inside this repository is read from each revision's own tree (its copy
of configs/smoke.yaml, say), a file elsewhere as it is; `-o` overrides go to both revisions and
must be valid in both schemas, `--before-override` / `--after-override` to one side only.
Both read the same dataset (data.dataset_id under MINARI_DATASETS_PATH).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Runs inside each worker: import the extracted tree's package (not the installed one),
# build a default Trainer, then time a block of updates each time a line arrives on stdin.
WORKER = r'''
import hashlib, importlib.util, sys, time, tomllib
from importlib.abc import MetaPathFinder
from pathlib import Path

root = Path(sys.argv[1])
dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

class TreeFinder(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in dirs:
            return None
        folder = root / dirs[name]
        return importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])

sys.meta_path.insert(0, TreeFinder())
from safecritic.pipeline import load
from safecritic.controller.training import Trainer
from safecritic.envs.dataset import load_offline_data

config = load(sys.argv[2] or None, sys.argv[4:])
trainer = Trainer(config, load_offline_data(config.data), "unused")
step = trainer.update_step()
for _ in range(int(sys.argv[3])):
    step()
params = list(trainer.model.parameters())
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in params)).hexdigest()
shapes = hashlib.sha256(repr([tuple(p.shape) for p in params]).encode()).hexdigest()
print("ready", digest, shapes, flush=True)
for line in sys.stdin:
    n = int(line)
    start = time.perf_counter()
    for _ in range(n):
        step()
    print(n / (time.perf_counter() - start), flush=True)
'''


def extract(rev: str, into: Path) -> str:
    """`git archive` of rev into a folder; returns the full commit id."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def config_in(tree: Path, config: Path | None) -> str:
    """The config file a revision's worker reads: a file inside this repository from that revision's
    tree (its own version of the preset), any other as it is; "" for the packaged default."""
    if config is None:
        return ""
    path = config.resolve()
    try:
        return str(tree / path.relative_to(REPO))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="git revision (e.g. a commit id, HEAD~2)")
    parser.add_argument("after", help="git revision, or 'worktree' for the uncommitted checkout")
    parser.add_argument("-c", "--config", type=Path, default=None, help="config (default: packaged PointNav)")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="config override for both revisions, as in safecritic train")
    parser.add_argument("--before-override", action="append", default=[], help="config override for the before revision only")
    parser.add_argument("--after-override", action="append", default=[], help="config override for the after revision only")
    parser.add_argument("--warmup", type=int, default=30, help="updates before timing (and before the parameter check)")
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--block", type=int, default=25, help="updates per timed block")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/revision_ab.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="revision_ab_") as tmp:
        trees, commits = {}, {}
        for label in ("before", "after"):
            rev = getattr(args, label)
            if rev == "worktree":
                trees[label], commits[label] = REPO, "worktree"
            else:
                trees[label] = Path(tmp) / label
                commits[label] = extract(rev, trees[label])
        workers, digests, shapes = {}, {}, {}
        for label, tree in trees.items():  # one at a time: their warm-ups must not overlap
            overrides = [*args.override, *getattr(args, f"{label}_override")]
            workers[label] = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(tree), config_in(tree, args.config), str(args.warmup), *overrides],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
            first = workers[label].stdout.readline().split()
            if not first or first[0] != "ready":
                raise SystemExit(f"the {label} worker ({getattr(args, label)}) failed to start; its error is above")
            digests[label], shapes[label] = first[1], first[2]
        rates: dict[str, list[float]] = {label: [] for label in workers}
        for _ in range(args.blocks):
            for label, worker in workers.items():
                worker.stdin.write(f"{args.block}\n")
                worker.stdin.flush()
                rates[label].append(float(worker.stdout.readline()))
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()

    med = {label: float(np.median(r)) for label, r in rates.items()}
    comparable = shapes["before"] == shapes["after"]
    same = comparable and digests["before"] == digests["after"]
    rows = [[f"{label}: {getattr(args, label)} ({commits[label][:9]})", f"{med[label]:.1f}",
             f"{1000 / med[label]:.2f}", f"{min(r):.1f}-{max(r):.1f}"] for label, r in rates.items()]
    write_json(args.out, {"machine": machine(), "commits": commits, "overrides": args.override,
                          "warmup": args.warmup, "block": args.block, "rates": rates,
                          "speedup": med["after"] / med["before"], "identical_parameters": same,
                          "comparable_parameters": comparable})
    print(markdown_table(["revision", "updates/s (median)", "ms/update", "range of blocks"], rows))
    print(f"\nspeed-up {med['after'] / med['before']:.3f}x; parameters after {args.warmup} updates "
          f"{'identical (same bits)' if same else 'differ' if comparable else 'not comparable (different shapes)'}; "
          f"saved {args.out}")


if __name__ == "__main__":
    main()
