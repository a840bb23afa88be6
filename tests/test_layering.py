"""The layering DESIGN.md draws, checked on the source: configs/ imports nothing above it, deploy/
never imports the CLI package, and no generic layer imports a task's own module (envs/<task>/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

GENERIC = ["configs", "critics", "controller", "deploy"]
TASK_MODULES = sorted(p.name for p in (REPO / "envs").iterdir() if p.is_dir() and (p / "__init__.py").exists())


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Every absolute `safecritic.*` module each file of a folder imports, by file."""
    out: dict[str, set[str]] = {}
    for path in sorted((REPO / folder).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[path.name] = {n for n in names if n.startswith("safecritic")}
    return out


def test_there_are_task_modules_to_keep_out():
    assert "pointnav" in TASK_MODULES


def test_configs_import_nothing_above_them():
    for name, mods in imported_modules("configs").items():
        above = {m for m in mods if not m.startswith("safecritic.configs")}
        assert not above, f"configs/{name} imports {sorted(above)}"


def test_deploy_never_imports_the_cli_package():
    for name, mods in imported_modules("deploy").items():
        cli = {m for m in mods if m in ("safecritic.cli", "safecritic.pipeline") or m == "safecritic.__version__"}
        assert not cli, f"deploy/{name} imports {sorted(cli)}"


@pytest.mark.parametrize("folder", GENERIC)
def test_generic_layers_import_no_task_module(folder):
    for name, mods in imported_modules(folder).items():
        tasks = {m for m in mods for t in TASK_MODULES if m.startswith(f"safecritic.envs.{t}")}
        assert not tasks, f"{folder}/{name} imports a task's own module: {sorted(tasks)}"


@pytest.mark.parametrize("folder", GENERIC)
def test_generic_layers_do_not_name_a_shipped_task(folder):
    """Not in code, defaults or comments: a user's task must work from what the generic layers say."""
    for path in sorted((REPO / folder).glob("*.py")):
        text = path.read_text().lower()
        named = [t for t in TASK_MODULES if t in text]
        assert not named, f"{folder}/{path.name} names {named}"
