"""The ONNX export (deploy/onnx_export.py): the file agrees with the TorchScript artifact, faults
included, at any batch size; it is listed in the manifest with its hash; a failed parity check
writes nothing."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")  # the optional extra: pip install 'safecritic[onnx]'
onnx = pytest.importorskip("onnx")

from safecritic.cli import main  # noqa: E402
from safecritic.configs.errors import RunError  # noqa: E402
from safecritic.controller.gate import CODE_FAULT, GatedController  # noqa: E402
from safecritic.controller.model import ConstantAction  # noqa: E402
from safecritic.deploy import onnx_export  # noqa: E402
from safecritic.deploy.export import PARITY_TOLERANCE, export_run, load_for_export, parity, script_bytes  # noqa: E402
from safecritic.deploy.onnx_export import (FUZZ_KINDS, OnnxController, export_checked,  # noqa: E402
                                           fuzzed_observations, require_onnx)
from safecritic.deploy.runtime import artifact_digest, load  # noqa: E402

RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


@pytest.fixture(scope="module")
def onnx_artifact(smoke_run, tmp_path_factory):
    """`safecritic export RUN --onnx` into a folder of its own (the shared artifact stays TorchScript-only)."""
    out = tmp_path_factory.mktemp("onnx") / "artifact"
    assert main(["export", str(smoke_run), "--out", str(out), "--onnx"]) == 0
    return out


def with_faults(obs: torch.Tensor) -> torch.Tensor:
    """The observations with an all-zero row (a norm's epsilon matters there), then NaN, +inf and -inf
    rows appended (one bad entry each, and one all bad)."""
    bad = obs[:4].clone()
    bad[0, 3], bad[1, 0], bad[2, -1] = float("nan"), float("inf"), float("-inf")
    bad[3] = float("nan")
    return torch.cat([obs, torch.zeros(1, obs.shape[1]), bad])


def assert_agree(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> None:
    """Within the export's rule: actions to 1e-5, records to RECORD_TOLERANCE x max(1, |value|), codes and NaN
    positions equal."""
    (a1, r1), (a2, r2) = reference, other
    np.testing.assert_array_equal(np.isnan(r1), np.isnan(r2))
    np.testing.assert_array_equal(r1[:, 0], r2[:, 0])
    scale = np.maximum(1.0, np.abs(np.nan_to_num(r1)))
    assert (np.abs(np.nan_to_num(r1 - r2)) / scale).max() <= onnx_export.RECORD_TOLERANCE
    assert np.abs(a1 - a2).max() <= PARITY_TOLERANCE


def test_onnx_matches_the_torchscript_artifact_on_data_and_faults(onnx_artifact, observations):
    obs = with_faults(observations).numpy()
    runtime = load(onnx_artifact)
    session = OnnxController((onnx_artifact / "controller.onnx").read_bytes())
    action, record = session.run(obs)
    assert_agree(runtime.act(obs), (action, record))
    faults = record[-4:]
    assert (faults[:, 0] == CODE_FAULT).all() and np.isnan(faults[:, 1:]).all()
    np.testing.assert_array_equal(action[-4:], np.tile(runtime.manifest["safe_action"]["constant"], (4, 1)))
    assert (record[:-4, 0] != CODE_FAULT).all() and np.isfinite(record[-5]).all()  # the zero row: no NaN


@pytest.mark.parametrize("batch", [1, 37])
def test_batch_axis_is_dynamic(onnx_artifact, observations, batch):
    obs = with_faults(observations).numpy()[-batch:]  # the fault rows at the end of both batches
    session = OnnxController((onnx_artifact / "controller.onnx").read_bytes())
    action, record = session.run(obs)
    assert action.shape == (batch, 2) and record.shape == (batch, 6)
    assert_agree(load(onnx_artifact).act(obs), (action, record))


def test_manifest_lists_the_file_its_hash_and_its_interface(onnx_artifact):
    manifest = json.loads((onnx_artifact / "manifest.json").read_text())
    blob = (onnx_artifact / "controller.onnx").read_bytes()
    assert manifest["files"]["controller.onnx"] == hashlib.sha256(blob).hexdigest()
    assert manifest["files"]["controller.pt"] == hashlib.sha256((onnx_artifact / "controller.pt").read_bytes()).hexdigest()
    entry = manifest["onnx"]
    assert entry["inputs"] == [{"name": "observation", "shape": ["batch", 12], "dtype": "float32"}]
    assert entry["outputs"] == [{"name": "action", "shape": ["batch", 2], "dtype": "float32"},
                                {"name": "record", "shape": ["batch", 6], "dtype": "float32"}]
    model = onnx.load_from_string(blob)
    assert entry["opset"] == next(o.version for o in model.opset_import if o.domain == "")
    assert entry["parity_max_scaled_diff"] <= onnx_export.RECORD_TOLERANCE
    assert entry["parity_decisions_max_scaled_diff"] <= PARITY_TOLERANCE
    assert entry["parity_observations"]["fuzzed"] == onnx_export.FUZZ_ROWS
    assert not {node.op_type for node in model.graph.node} & RANDOM_OPS  # the candidates are fixed by the proposal
    load(onnx_artifact)  # the TorchScript side still verifies and loads


def test_a_release_carries_the_onnx_file(onnx_artifact, tmp_path):
    from safecritic.deploy.certify import release

    manifest = json.loads((onnx_artifact / "manifest.json").read_text())
    target = release(onnx_artifact, None, tmp_path, "smoke", artifact_digest(manifest))
    blob = (target / "controller.onnx").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == manifest["files"]["controller.onnx"]


def test_fuzzed_observations_are_fixed_and_cover_every_kind(observations):
    rows = fuzzed_observations(observations, 70)
    assert torch.equal(rows.isnan(), fuzzed_observations(observations, 70).isnan())
    assert torch.equal(torch.nan_to_num(rows), torch.nan_to_num(fuzzed_observations(observations, 70)))
    kind = torch.arange(70) % len(FUZZ_KINDS)
    non_finite = ~torch.isfinite(rows).all(dim=1)
    assert non_finite[kind >= 4].all() and not non_finite[kind < 4].any()
    assert (rows[kind == 2].abs().amax(dim=1) >= 1e4).all()
    zeros = rows[kind == 3]
    assert (zeros == 0).any(dim=1).all() and (zeros == 0).all(dim=1).any()
    assert rows[kind == 4].isnan().any(dim=1).all() and (rows[kind == 5] == float("inf")).any(dim=1).all()


def test_ablation_and_a_constant_safe_action_export_too(smoke_run, observations):
    """PolicyController (the ablations), and the gate of a task without a safe action of its own
    (the constant, the proposal as fallback): other branches of the same forward()."""
    config, model, _, obs = load_for_export(smoke_run)
    from safecritic.deploy.export import VARIANTS, build_controller

    model.safe_action = ConstantAction(model.safe_action(torch.zeros(1, model.spec.obs_dim))[0])
    for controller in (build_controller(model, config, VARIANTS["gate_off"]), GatedController(model, config.gate)):
        scripted, _ = script_bytes(controller)
        blob, entry = export_checked(controller, scripted, obs, PARITY_TOLERANCE)
        session = OnnxController(blob)
        check = with_faults(observations)
        assert parity(scripted, session, check, scale_floor=1.0) <= onnx_export.RECORD_TOLERANCE
        assert entry["parity_max_scaled_diff"] <= onnx_export.RECORD_TOLERANCE
        assert entry["parity_decisions_max_scaled_diff"] <= PARITY_TOLERANCE


@pytest.mark.parametrize("part, change, refused", [("action", 3e-5, True), ("record", 3e-5, False), ("record", 1e-3, True)])
def test_a_failed_onnx_parity_check_writes_nothing(smoke_run, tmp_path, monkeypatch, part, change, refused):
    """Actions are judged at the export's tolerance (1e-5), the logged record at RECORD_TOLERANCE (1e-4,
    relative above 1): float32 sums in another order part the record's values by up to ~1e-5."""
    real_run = OnnxController.run

    def off_by_a_little(self, obs):
        action, record = real_run(self, obs)
        if part == "action":
            return action + change, record
        record = record.copy()
        record[:, 1:] = record[:, 1:] * (1 + change)
        return action, record

    monkeypatch.setattr(OnnxController, "run", off_by_a_little)
    out = tmp_path / "artifact"
    if refused:
        with pytest.raises(RunError, match="ONNX parity check failed.*nothing written"):
            export_run(smoke_run, out, onnx=True)
        assert not out.exists()
    else:
        export_run(smoke_run, out, onnx=True)
        assert (out / "controller.onnx").exists()


def test_export_without_onnx_drops_a_stale_file(smoke_run, tmp_path):
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "controller.onnx").write_bytes(b"an earlier export")
    manifest = export_run(smoke_run, out)
    assert not (out / "controller.onnx").exists()
    assert set(manifest["files"]) == {"controller.pt"} and "onnx" not in manifest


def test_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RunError, match=r"pip install 'safecritic\[onnx\]'"):
        require_onnx()
