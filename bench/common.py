"""Helpers shared by the bench scripts: JSON output and Markdown/console tables."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic write (temp file + rename), like every artifact of a run."""
    from safecritic.configs.fileio import atomic_write_text

    atomic_write_text(Path(path), json.dumps(payload, indent=2))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
