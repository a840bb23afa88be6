"""Export a trained run's controller: TorchScript file + manifest + digest, after a parity check.

The scripted module must match the eager one on real observations (max abs diff
<= 1e-5) before anything is written. The module carries the facts the manifest states
about it (spaces, bounds, thresholds, candidates, safe action: FACTS_ATTRIBUTE), so the
runtime refuses a manifest edited to say otherwise; the manifest lists every payload
file's SHA-256, and the `digest` file holds the SHA-256 of the manifest's canonical JSON
(one digest over module and manifest, which names releases and signatures sign). Files
are written atomically, payload first, the digest last.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safecritic.configs.errors import RunError
from safecritic.configs.fileio import atomic_write_bytes, atomic_write_text
from safecritic.configs.loader import config_from_data, parse_override
from safecritic.configs.schema import Config
from safecritic.controller.gate import DECISIONS, RECORD_FIELDS, GatedController, PolicyController
from safecritic.controller.model import ConstantAction
from safecritic.controller.training import RunPaths, load_trained
from safecritic.deploy.artifact import (CONTROLLER_FILE, DIGEST_FILE, FACTS_ATTRIBUTE, FORMAT_VERSION, MANIFEST_FILE,
                                        ONNX_FILE, SIGNATURE_FILE)
from safecritic.deploy.runtime import artifact_digest, canonical_json
from safecritic.envs.dataset import load_offline_data

PARITY_TOLERANCE = 1e-5  # DESIGN.md: max abs diff between scripted and eager outputs
PARITY_OBSERVATIONS = 2048


@dataclass(frozen=True)
class Variant:
    """One exported controller: the full gate, or an ablation of it (a separate module, built for evaluation)."""

    name: str
    kind: str  # "gated" or "policy"
    use_cost: bool = True
    use_ood: bool = True
    policy: str = "actor"  # for kind "policy": actor | unconstrained | bc | bc_successful
    description: str = ""


FULL = Variant("gated", "gated", description="the actor's proposal, vetoed by the accident critics and the OOD detector")
ABLATIONS = [
    Variant("gate_off", "policy", description="the actor alone (policy.learner's policy), no veto"),
    Variant("accident_only", "gated", use_ood=False, description="veto by the accident critics only"),
    Variant("ood_only", "gated", use_cost=False, description="veto by the OOD detector only"),
    Variant("unconstrained", "policy", policy="unconstrained",
            description="the same actor fit without the accident constraint, no gate"),
    Variant("bc", "policy", policy="bc", description="the behaviour prior's mode (BC on all the data), no gate"),
    Variant("bc_successful", "policy", policy="bc_successful",
            description="BC on the successful episodes only (pi_ref's mode), no gate"),
]
VARIANTS = {v.name: v for v in (FULL, *ABLATIONS)}


def ablations_for(config) -> list[Variant]:
    """The ablations a run of this config has: the unconstrained twin only where the learner trains one."""
    from safecritic.controller.learners import learner_class

    twin = learner_class(config.policy.learner).has_twin
    return [v for v in ABLATIONS if twin or v.policy != "unconstrained"]


def build_controller(model, config, variant: Variant) -> torch.nn.Module:
    if variant.kind == "policy":
        return PolicyController(model, config.gate, variant.policy)
    return GatedController(model, config.gate, variant.use_cost, variant.use_ood)


def package_version() -> str:
    """The installed safecritic's version (deploy never imports the CLI package)."""
    try:
        return metadata.version("safecritic")
    except metadata.PackageNotFoundError:
        return "unknown"


def parity(eager: torch.nn.Module, scripted: torch.jit.ScriptModule, obs: torch.Tensor,
           scale_floor: float | None = None) -> float:
    """Max abs difference of action and record (NaN positions must agree). With `scale_floor`
    each difference is divided by max(scale_floor, |eager's value|): absolute up to that
    magnitude, relative above it, for fuzzed observations whose Q-values reach 1e37, where
    float32 kernels that sum in another order differ by far more than 1e-5 in absolute terms."""
    with torch.no_grad():
        a1, r1 = eager(obs)
        a2, r2 = scripted(obs)
    if not torch.equal(torch.isnan(r1), torch.isnan(r2)):
        return float("inf")

    def worst(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = torch.nan_to_num(x - y, nan=0.0).abs()
        if scale_floor is not None:  # an infinite value of x scales by the floor: inf vs finite stays inf
            d = d / torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).abs().clamp_min(scale_floor)
        return d.max()

    return float(max(worst(a1, a2), worst(r1, r2)))


def module_facts(controller: torch.nn.Module, obs_dim: int, thresholds: dict[str, float]) -> dict[str, Any]:
    """What the manifest states about the module, read from the module's own buffers where it
    holds them (a gate's thresholds; a bare policy holds none, so the manifest's are recorded)."""
    def held(name: str, fallback: float) -> float:
        return float(getattr(controller, name)) if hasattr(controller, name) else float(fallback)

    return {"format_version": FORMAT_VERSION, "obs_dim": int(obs_dim), "act_dim": int(controller.act_low.numel()),
            "act_low": controller.act_low.tolist(), "act_high": controller.act_high.tolist(),
            "cost_threshold": held("cost_threshold", thresholds["cost"]),
            "ood_threshold": held("ood_threshold", thresholds["ood"]),
            "ood_false_alarm_rate": float(thresholds["ood_false_alarm_rate"]),
            "candidates": int(controller.candidate_count), "safe_action": controller.safe_action.tolist(),
            "record_fields": list(RECORD_FIELDS)}


def write_artifact(out_dir: Path, payload: dict[str, bytes], manifest: dict[str, Any]) -> str:
    """Write the payload files, the manifest listing their SHA-256 (manifest["files"]) and the
    digest, in that order; returns the digest. A stale digest or signature goes first, so a
    crash midway leaves an artifact the runtime refuses as unfinished, never one it trusts."""
    out_dir = Path(out_dir)
    for stale in (DIGEST_FILE, SIGNATURE_FILE):
        if (out_dir / stale).is_file():
            os.unlink(out_dir / stale)
    manifest["files"] = {name: hashlib.sha256(blob).hexdigest() for name, blob in payload.items()}
    for name, blob in payload.items():
        atomic_write_bytes(out_dir / name, blob)
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2))
    digest = artifact_digest(manifest)
    atomic_write_text(out_dir / DIGEST_FILE, digest + "\n")
    return digest


def script_bytes(module: torch.nn.Module) -> tuple[torch.jit.ScriptModule, bytes]:
    scripted = torch.jit.script(module)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return scripted, buffer.getvalue()


def load_for_export(run_dir: Path) -> tuple:
    """(config, model, checkpoint, parity observations) of a trained run, read once."""
    config, model, state = load_trained(Path(run_dir))
    data = load_offline_data(config.data)
    source = data.test if len(data.test) else data.calib
    obs = source.obs[torch.linspace(0, len(source) - 1, min(PARITY_OBSERVATIONS, len(source))).long()]
    return config, model, state, obs


def with_gate_overrides(config: Config, overrides: list[str]) -> Config:
    """The run's config with `gate.*` overrides: the gate is built at export, so its settings
    (thresholds, candidates, precision, ...) can change without retraining; nothing else can."""
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] != "gate":
            raise RunError(f"export -o {text!r}: only gate.* settings can change at export time; "
                           f"{'.'.join(path)} needs a new training run (safecritic train -o ...)")
    return config_from_data(config.model_dump(mode="json"), overrides, f"export overrides {overrides}")


def export_run(run_dir: Path, out_dir: Path | None = None, variant: Variant = FULL, loaded: tuple | None = None,
               gate_overrides: list[str] | None = None, onnx: bool = False) -> dict[str, Any]:
    """Export `variant` of the run in run_dir to out_dir (default run_dir/artifact); with `onnx`
    also controller.onnx, parity-checked against the TorchScript module (deploy/onnx_export.py)."""
    run_dir = Path(run_dir)
    config, model, state, obs = loaded if loaded is not None else load_for_export(run_dir)
    if gate_overrides:
        config = with_gate_overrides(config, gate_overrides)
    controller = build_controller(model, config, variant)
    thresholds = {"cost": config.gate.cost_threshold, "ood": float(model.ood_tau),
                  "ood_false_alarm_rate": config.critics.ood.false_alarm_rate}
    setattr(controller, FACTS_ATTRIBUTE, canonical_json(module_facts(controller, model.spec.obs_dim, thresholds)).decode())
    scripted, blob = script_bytes(controller)
    worst = parity(controller, scripted, obs)
    if not worst <= PARITY_TOLERANCE:
        raise RunError(f"TorchScript parity check failed: max abs diff {worst:.3g} > {PARITY_TOLERANCE}; nothing written")
    onnx_blob, onnx_entry = None, None
    if onnx:  # checked before anything is written, as the TorchScript file is
        from safecritic.deploy.onnx_export import export_checked

        onnx_blob, onnx_entry = export_checked(controller, scripted, obs, PARITY_TOLERANCE)
    out_dir = Path(out_dir) if out_dir else run_dir / "artifact"
    summary_path = RunPaths(run_dir).summary
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "safecritic_version": package_version(),
        "torch_version": torch.__version__,
        "variant": {"name": variant.name, "description": variant.description},
        "observation_space": {"shape": [model.spec.obs_dim], "dtype": "float32"},
        "action_space": {"shape": [model.spec.act_dim], "low": list(model.spec.act_low), "high": list(model.spec.act_high)},
        "thresholds": thresholds,
        "candidates": int(controller.candidate_count),
        "safe_action": {"constant": controller.safe_action.tolist(),
                        "module": (type(controller.safe_module).__name__ if variant.kind == "gated"
                                   and not isinstance(controller.safe_module, ConstantAction) else None)},
        "record_fields": RECORD_FIELDS,
        "decisions": {str(k): v for k, v in DECISIONS.items()},
        "parity_max_abs_diff": worst,
        "dataset": {"id": config.data.dataset_id, "sha256": state["dataset_sha256"]},
        "config": config.model_dump(mode="json"),
        "training": {"calibration": state["calibration"], "timings": state["timings"],
                     "constraint": state["calibration"].get("constraint"),
                     "critic_updates_per_s": summary.get("critic_updates_per_s")},
    }
    payload = {CONTROLLER_FILE: blob}
    if onnx_blob is not None:
        payload[ONNX_FILE] = onnx_blob
        manifest["onnx"] = onnx_entry
    else:  # an earlier export's file would sit unlisted beside a manifest that no longer vouches for it
        (out_dir / ONNX_FILE).unlink(missing_ok=True)
    write_artifact(out_dir, payload, manifest)
    return manifest
