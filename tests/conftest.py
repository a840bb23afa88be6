"""Shared fixtures: an isolated Minari folder, the smoke dataset, a smoke run and its artifact, each made once."""

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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_dataset, smoke_config) -> Path:
    """The smoke preset trained once per session (seconds)."""
    from safecritic.pipeline import train

    run_dir = tmp_path_factory.mktemp("deploy") / "smoke"
    train(smoke_config, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def artifact(smoke_run) -> Path:
    """The smoke run's exported gated controller (tests that change it work on a copy)."""
    from safecritic.pipeline import export

    export(smoke_run)
    return smoke_run / "artifact"


@pytest.fixture(scope="session")
def observations(smoke_run):
    """256 held-out observations of the smoke dataset, as a float32 tensor."""
    from safecritic.controller.training import load_trained
    from safecritic.envs.dataset import load_offline_data

    config, _, _ = load_trained(smoke_run)
    return load_offline_data(config.data).test.obs[:256]
