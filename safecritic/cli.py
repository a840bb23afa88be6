"""`safecritic`: the command line. Exit codes: 0 ok, 1 certification failed, 2 bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from safecritic import __version__
from safecritic.configs.errors import SafecriticError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=None, metavar="CONFIG",
        help="YAML config (default: the packaged PointNav preset, configs/pointnav.yaml)",
    )
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value, dotted (repeatable), e.g. -o data.episodes=50",
    )


def _load(args: argparse.Namespace):
    from safecritic.configs.loader import load_config

    return load_config(args.config, args.override)


def _progress(total: int, desc: str, unit: str):
    """A tqdm bar on stderr (quiet when stderr is not a terminal and CI is set)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


def cmd_collect(args: argparse.Namespace) -> int:
    from safecritic.pipeline import collect

    config = _load(args)
    with _progress(config.data.episodes, f"collect {config.data.dataset_id}", "ep") as bar:
        summary = collect(config, overwrite=args.overwrite, progress=bar.update)
    print(f"dataset  {summary.dataset_id}")
    print(f"path     {summary.path}")
    print(f"size     {summary.episodes} episodes, {summary.transitions} transitions, {summary.seconds:.1f} s")
    print(f"{'behaviour':<10} {'episodes':>8} {'success':>8} {'accident':>9} {'return':>8} {'length':>7}")
    for name, s in summary.per_behavior.items():
        print(
            f"{name:<10} {s['episodes']:>8d} {s['success_rate']:>8.1%} {s['accident_rate']:>9.1%} "
            f"{s['mean_return']:>8.2f} {s['mean_length']:>7.1f}"
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safecritic",
        description=(
            "Train offline safety critics, gate a KL-constrained policy with them, export it to "
            "TorchScript and certify it in MuJoCo and PyBullet."
        ),
        epilog="Exit codes: 0 ok, 1 certification failed, 2 bad input. Docs: README.md.",
    )
    parser.add_argument("--version", action="version", version=f"safecritic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "collect",
        help="collect a Minari dataset from the config's behaviour mixture",
        description=(
            "Run the scripted behaviours named in data.behaviors (with their weights) for data.episodes "
            "episodes in env.id and write them as the local Minari dataset data.dataset_id, with per-step "
            "cost, accident and success infos. Datasets live under $MINARI_DATASETS_PATH "
            "(default ~/.minari/datasets). An existing dataset is never replaced without --overwrite."
        ),
    )
    _add_config_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace the dataset if it exists")
    p.set_defaults(func=cmd_collect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SafecriticError as exc:
        print(f"safecritic {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"safecritic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
