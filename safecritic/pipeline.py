"""The main job's stages as plain function calls, usable from Python and from the CLI."""

from __future__ import annotations

from typing import Callable

from safecritic.configs.schema import Config
from safecritic.envs.collect import CollectSummary, collect_dataset


def collect(config: Config, overwrite: bool = False, progress: Callable[[int], None] | None = None) -> CollectSummary:
    """Stage 1: write the configured Minari dataset from the behaviour mixture."""
    return collect_dataset(config, overwrite=overwrite, progress=progress)
