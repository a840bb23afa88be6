"""Helpers shared by the bench scripts: JSON output and Markdown/console tables."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
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
        # Runs are compared across days on VMs whose speed moves: say when this one ran.
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def matmul_peak(threads: int, seconds: float = 3.0, n: int = 2048, dtype: "torch.dtype | None" = None) -> float:
    """GFLOP/s of a large square matmul in `dtype` (default fp32): the machine's practical peak."""
    import torch

    torch.set_num_threads(threads)
    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def scripted_policy(path: Path):
    """A saved TorchScript policy (d3rlpy's save_policy: observations [B, D] -> actions [B, A]; bench/plain_cql.py's:
    -> (actions, record)) with the controller interface of controller/evaluation.rollout_policy: (actions, record)."""
    import torch

    module = torch.jit.load(str(path))

    def controller(obs: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        out = module(obs)
        return out if isinstance(out, tuple) else (out, obs.new_zeros(obs.shape[0], 0))

    return controller


def artifact_of(run_dir: Path, variant: str) -> Path:
    """Where `safecritic run` exported a variant: the gated controller in artifact/, each ablation
    in ablations/<name>/."""
    return run_dir / "artifact" if variant == "gated" else run_dir / "ablations" / variant


def rolled_with_paths(run_dir: Path, variant: str) -> tuple[dict, float]:
    """A run's exported variant rolled on the certification's episodes with every path kept
    (`deploy.trajectories`): ({env_id: EnvEvaluation}, the artifact's cost threshold). Exits with
    the command that makes the artifact where there is none."""
    from safecritic.configs import load_config
    from safecritic.deploy.evaluate import evaluate_artifacts
    from safecritic.deploy.runtime import read_verified

    artifact = artifact_of(run_dir, variant)
    if not (artifact / "manifest.json").exists():
        sys.exit(f"error: no exported controller at {artifact}; run `safecritic run` on {run_dir} first")
    config = load_config(run_dir / "config.yaml")
    config = load_config(run_dir / "config.yaml", [f"deploy.trajectories={config.deploy.episodes}"])
    cost_threshold = float(read_verified(artifact).manifest["thresholds"]["cost"])
    return evaluate_artifacts([artifact], config)[str(artifact)], cost_threshold


def decision_shares(records: "np.ndarray") -> dict[str, float]:
    """The share of each gate decision (policy, other candidate, fallback, fault) among records [N, R]."""
    import numpy as np

    from safecritic.controller.gate import DECISIONS, RECORD_FIELDS

    codes = np.bincount(records[:, RECORD_FIELDS.index("code")].astype(int), minlength=len(DECISIONS))
    return {DECISIONS[c]: float(codes[c] / max(len(records), 1)) for c in DECISIONS}


def shares_text(shares: dict[str, float]) -> str:
    """'policy / other / fallback' shares as a table cell."""
    from safecritic.controller.gate import CODE_FALLBACK, CODE_POLICY, DECISIONS

    return " / ".join(f"{shares.get(DECISIONS[c], 0.0):.0%}" for c in range(CODE_POLICY, CODE_FALLBACK + 1))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic write (temp file + rename), like every artifact of a run."""
    from safecritic.configs.fileio import atomic_write_text

    atomic_write_text(Path(path), json.dumps(payload, indent=2))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
