"""Where Minari datasets live, and writing one atomically.

Minari writes straight into `$MINARI_DATASETS_PATH/<id>`. A crash half way would leave
a broken dataset under the real id, so we write into a hidden staging root on the
same filesystem and move the finished folder into place with one rename. A staging root
left by a killed writer is deleted by the next write; a lock per id keeps two writers apart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from safecritic.configs.errors import DatasetError
from safecritic.configs.crashpoint import crash_point
from safecritic.configs.fileio import left_by_dead_writer, writer_tag
from safecritic.configs.lock import exclusive

NAMESPACE_FILE = "namespace_metadata.json"  # minari.namespace.NAMESPACE_METADATA_FILENAME
STAGING = ".staging-"


def datasets_root() -> Path:
    """`$MINARI_DATASETS_PATH`, or Minari's default `~/.minari/datasets`."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def dataset_dir(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def dataset_exists(dataset_id: str) -> bool:
    return (dataset_dir(dataset_id) / "data").is_dir()


def copy_dataset(source_id: str, new_id: str) -> Path:
    """A copy of dataset `source_id` under `new_id` (replacing an earlier copy), to damage or
    edit without touching the original (tests/test_hardening.py, bench/adversarial.py);
    returns the copy's main_data.hdf5."""
    import json

    target = dataset_dir(new_id)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(dataset_dir(source_id), target)
    meta = target / "data" / "metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "dataset_id": new_id}))
    return target / "data" / "main_data.hdf5"


def root_description() -> str:
    env = os.environ.get("MINARI_DATASETS_PATH")
    return f"MINARI_DATASETS_PATH={env}" if env else f"Minari's default folder {datasets_root()} (MINARI_DATASETS_PATH is not set)"


def refuse_existing(dataset_id: str) -> None:
    raise DatasetError(
        f"dataset {dataset_id!r} already exists at {dataset_dir(dataset_id)}; refusing to replace it. "
        "Pass --overwrite to replace it, or choose another id with -o data.dataset_id=<name>-v<N>"
    )


def dataset_lock(dataset_id: str) -> contextlib.AbstractContextManager[None]:
    """Held while a dataset is collected: a second collector of the same id is refused, not interleaved."""
    return exclusive(datasets_root() / f".{dataset_id.replace('/', '+')}.lock", f"dataset {dataset_id!r}",
                     "or collect into another id (-o data.dataset_id=<name>-v<N>)", DatasetError)


@contextlib.contextmanager
def _datasets_path(path: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def write_atomically(dataset_id: str, overwrite: bool, create) -> Path:
    """Run `create()` (which calls minari.create_dataset_from_buffers) in a staging root,
    then move the result to `dataset_dir(dataset_id)`. Refuses an existing id unless
    `overwrite`; the old data is only removed once the new data is in place."""
    final = dataset_dir(dataset_id)
    if final.exists() and not overwrite:
        refuse_existing(dataset_id)
    root = datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{STAGING}*"):
        if left_by_dead_writer(stale.name, STAGING):
            shutil.rmtree(stale, ignore_errors=True)
    staging = root / f"{STAGING}{writer_tag()}.{uuid.uuid4().hex[:12]}"
    try:
        with _datasets_path(staging):
            create()
        crash_point("collect", "staged")
        final.parent.mkdir(parents=True, exist_ok=True)
        _copy_namespace_metadata(staging, root, dataset_id)
        trash = None
        if final.exists():
            trash = final.with_name(f".trash-{uuid.uuid4().hex[:12]}-{final.name}")
            final.rename(trash)
        (staging / dataset_id).rename(final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _copy_namespace_metadata(staging: Path, root: Path, dataset_id: str) -> None:
    """Minari marks namespaces with a metadata file; carry any that the real root lacks."""
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        rel = Path(*parts[:depth]) / NAMESPACE_FILE
        if (staging / rel).is_file() and not (root / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(staging / rel, root / rel)
