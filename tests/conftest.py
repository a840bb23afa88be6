"""Shared fixtures: an isolated Minari folder and the smoke dataset, collected once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test sees its own MINARI_DATASETS_PATH, never the user's datasets."""
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="session")
def smoke_config():
    from safecritic.configs import load_config

    return load_config(SMOKE)


@pytest.fixture(scope="session")
def smoke_dataset(smoke_config, minari_root) -> str:
    """The smoke preset's dataset, collected once per test session."""
    from safecritic.envs.collect import collect_dataset
    from safecritic.envs.minari_io import dataset_exists

    if not dataset_exists(smoke_config.data.dataset_id):
        collect_dataset(smoke_config)
    return smoke_config.data.dataset_id
