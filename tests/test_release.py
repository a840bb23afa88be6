"""Integrity and provenance of the artifact (issue 28): one digest over module and manifest,
the manifest cross-checked against the module, signed releases, reports bound to the digest,
and the runtime's own guards. Every tamper case is refused with ArtifactError naming it."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from safecritic.cli import main
from safecritic.deploy import artifact as artifact_names
from safecritic.deploy import runtime
from safecritic.deploy.certify import release
from safecritic.deploy.runtime import ArtifactError, ObservationError, artifact_digest, load


def tampered(artifact: Path, folder: Path, edit: Callable[[dict[str, Any]], Any] | None = None,
             redigest: bool = False) -> Path:
    """A copy of the artifact with its manifest edited in place by `edit` (one that returns a
    list replaces the whole manifest by it); with `redigest`, the digest file is recomputed
    too (a forger who knows the layout)."""
    shutil.copytree(artifact, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if edit is not None:
        replaced = edit(manifest)
        manifest = replaced if isinstance(replaced, list) else manifest
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if redigest:
        (folder / "digest").write_text(artifact_digest(manifest) + "\n")
    return folder


def swap_controller(folder: Path, module: torch.nn.Module, facts: str | None) -> None:
    """Replace controller.pt by another TorchScript module, the manifest's file hash and the
    digest recomputed so that only the module itself can give it away."""
    if facts is not None:
        module.artifact_facts = facts
    scripted = torch.jit.script(module)
    torch.jit.save(scripted, str(folder / "controller.pt"))
    manifest = json.loads((folder / "manifest.json").read_text())
    import hashlib

    manifest["files"]["controller.pt"] = hashlib.sha256((folder / "controller.pt").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "digest").write_text(artifact_digest(manifest))


class Wild(torch.nn.Module):
    """A valid controller-shaped module that returns `value` for every action."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        return torch.full((b, 2), self.value), torch.zeros(b, 6)


def real_facts(artifact: Path) -> str:
    return torch.jit.load(str(artifact / "controller.pt")).artifact_facts


def test_the_runtime_and_the_writer_agree_on_the_format():
    for name in ("FORMAT_VERSION", "CONTROLLER_FILE", "MANIFEST_FILE", "DIGEST_FILE", "SIGNATURE_FILE", "FACTS_ATTRIBUTE"):
        assert getattr(runtime, name) == getattr(artifact_names, name), name
    assert runtime.FORMAT_VERSION == 2


def test_export_writes_one_digest_over_module_and_manifest(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert set(manifest["files"]) == {"controller.pt"} and "sha256" not in manifest
    digest = (artifact / "digest").read_text().strip()
    assert digest == artifact_digest(manifest) == load(artifact).digest
    facts = json.loads(real_facts(artifact))
    assert facts["obs_dim"] == 12 and facts["act_dim"] == 2 and facts["candidates"] == manifest["candidates"]
    assert np.float32(facts["cost_threshold"]) == np.float32(manifest["thresholds"]["cost"])


@pytest.mark.parametrize("name, edit, message", [
    ("cost threshold widened", lambda m: m["thresholds"].update(cost=1.5), "thresholds.cost is 1.5"),
    ("OOD threshold x10", lambda m: m["thresholds"].update(ood=m["thresholds"]["ood"] * 10), "thresholds.ood"),
    ("action bound widened", lambda m: m["action_space"].update(high=[100.0, 100.0]), "action_space.high"),
    ("observation shape", lambda m: m["observation_space"].update(shape=[13]), "observation_space.shape"),
    ("candidates", lambda m: m.update(candidates=1), "candidates"),
    ("safe action", lambda m: m["safe_action"].update(constant=[0.9, 0.9]), "safe_action.constant"),
])
def test_a_manifest_that_says_other_than_its_module_is_refused(artifact, tmp_path, name, edit, message):
    """Edited alone, the digest gives it away; with the digest recomputed, the module does."""
    plain = tampered(artifact, tmp_path / "plain", edit)
    with pytest.raises(ArtifactError, match="manifest.json does not match the artifact digest"):
        load(plain)
    forged = tampered(artifact, tmp_path / "forged", edit, redigest=True)
    with pytest.raises(ArtifactError, match=f"{message}.*the controller module holds"):
        load(forged)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("dataset"), "field 'dataset' is missing"),
    (lambda m: m["thresholds"].pop("cost"), "field 'thresholds.cost' is missing"),
    (lambda m: m.update(candidates="8"), "field 'candidates' must be a positive integer, got a string"),
    (lambda m: m.update(candidates=True), "field 'candidates' must be a positive integer, got a boolean"),
    (lambda m: m["action_space"].update(low=[-1.0]), "'action_space.low' has 1 entries"),
    (lambda m: m["files"].update({"../outside": "0" * 64}), "not a plain payload file name"),
    (lambda m: m["files"].pop("controller.pt"), "does not list controller.pt"),
    (lambda m: [m], "the top level must be a JSON object, got a list"),
    (lambda m: m.update(format_version=1), "format version 1 was written by an older safecritic.*re-export"),
])
def test_a_malformed_manifest_is_an_artifact_error(artifact, tmp_path, edit, message):
    """Missing fields, wrong types, a JSON list, a path outside the folder, version 1: named, not a KeyError."""
    with pytest.raises(ArtifactError, match=message):
        load(tampered(artifact, tmp_path / "bad", edit, redigest=True))


def test_a_foreign_module_is_refused_and_a_forged_one_is_clamped(artifact, tmp_path):
    bare = tampered(artifact, tmp_path / "bare")
    swap_controller(bare, Wild(1e6), facts=None)
    with pytest.raises(ArtifactError, match="carries no 'artifact_facts'.*not a controller written by"):
        load(bare)
    # A module forging the real facts loads (only a signature stops it: below); the runtime's own
    # guards still hold it to the bounds and fault a non-finite action.
    forged = tampered(artifact, tmp_path / "forged")
    swap_controller(forged, Wild(1e6), real_facts(artifact))
    action, record = load(forged).act(np.zeros((3, 12), np.float32))
    np.testing.assert_array_equal(action, np.ones((3, 2), np.float32))
    nan = tampered(artifact, tmp_path / "nan")
    swap_controller(nan, Wild(float("nan")), real_facts(artifact))
    controller = load(nan)
    action, record = controller.act(np.zeros(12, np.float32))
    np.testing.assert_array_equal(action, controller.manifest["safe_action"]["constant"])
    assert controller.explain(record)["decision"] == "fault"


def test_a_module_whose_buffers_contradict_its_facts_is_refused(artifact, smoke_run, tmp_path):
    """The facts are checked against the buffers the gate computes with, not only against the manifest."""
    from safecritic.controller.gate import GatedController
    from safecritic.controller.training import load_trained

    config, model, _ = load_trained(smoke_run)
    gate = GatedController(model, config.gate.model_copy(update={"cost_threshold": 1.5}))
    folder = tampered(artifact, tmp_path / "doctored")
    swap_controller(folder, gate, real_facts(artifact))  # claims 0.05, computes with 1.5
    with pytest.raises(ArtifactError, match="computes with cost_threshold = 1.5.*doctored"):
        load(folder)


def test_a_payload_byte_flip_or_missing_digest_is_refused(artifact, tmp_path):
    flipped = tampered(artifact, tmp_path / "flip")
    blob = bytearray((flipped / "controller.pt").read_bytes())
    blob[len(blob) // 3] ^= 0x40
    (flipped / "controller.pt").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="controller.pt does not match its manifest"):
        load(flipped)
    nodigest = tampered(artifact, tmp_path / "nodigest")
    (nodigest / "digest").unlink()
    with pytest.raises(ArtifactError, match="digest not found: the export did not finish"):
        load(nodigest)


@pytest.mark.parametrize("obs, message", [
    ([[0.0] * 12, [0.0] * 11], "not a rectangular array"),
    (np.zeros((0, 12), np.float32), "empty batch"),
    (np.zeros(12, np.complex64), "numeric"),
    (np.zeros(12, bool), "numeric"),
    (None, "numeric"),
    (np.float32(1.0), r"shape \(12,\) or \(batch, 12\), got \(\)"),
])
def test_bad_observations_are_observation_errors(artifact, obs, message):
    with pytest.raises(ObservationError, match=message):
        load(artifact).act(obs)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_extreme_observations_give_bounded_finite_actions(artifact):
    controller = load(artifact)
    rng = np.random.default_rng(1)
    wild = np.concatenate([rng.normal(0, 1e30, (64, 12)), np.full((2, 12), np.finfo(np.float64).max),
                           rng.normal(0, 1e3, (64, 12))])
    action, record = controller.act(wild)  # float64 beyond float32's range becomes inf: a fault, not a crash
    assert np.isfinite(action).all() and (action >= -1).all() and (action <= 1).all()
    assert (record[64:66, 0] == 3).all()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two key pairs written by `safecritic keygen`: ours and a stranger's."""
    folder = tmp_path_factory.mktemp("keys")
    for name in ("ours", "stranger"):
        assert main(["keygen", str(folder / name)]) == 0
    return {"ours": folder / "ours", "ours.pub": folder / "ours.pub", "stranger": folder / "stranger",
            "stranger.pub": folder / "stranger.pub"}


def test_keygen_writes_a_private_key_only_its_owner_reads(keys, capsys):
    assert stat.S_IMODE(os.stat(keys["ours"]).st_mode) == 0o600
    assert keys["ours.pub"].read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert main(["keygen", str(keys["ours"])]) == 2  # never replaces a key
    assert "exists: keygen never replaces a key" in capsys.readouterr().err


def test_signed_artifact_loads_only_with_a_trusted_key(artifact, keys, tmp_path, capsys):
    folder = tampered(artifact, tmp_path / "signed")
    assert load(folder, trusted_keys=None).signer is None
    with pytest.raises(ArtifactError, match="is not signed.*safecritic sign"):
        load(folder, trusted_keys=[keys["ours.pub"]])
    assert main(["sign", str(folder), "--key", str(keys["ours"])]) == 0
    signed = load(folder, trusted_keys=[keys["ours.pub"]])
    assert signed.signer == json.loads((folder / "signature.json").read_text())["key_id"]
    assert load(folder, trusted_keys=[keys["ours.pub"].read_bytes()]).signer == signed.signer
    with pytest.raises(ArtifactError, match="not among the trusted keys"):
        load(folder, trusted_keys=[keys["stranger.pub"]])
    with pytest.raises(ArtifactError, match="is not a PEM public key.*not the private key"):
        load(folder, trusted_keys=[keys["ours"]])
    capsys.readouterr()
    assert main(["sign", str(folder), "--key", str(keys["ours.pub"])]) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err


def test_an_edited_or_resigned_release_does_not_verify(artifact, keys, tmp_path):
    folder = tampered(artifact, tmp_path / "release")
    main(["sign", str(folder), "--key", str(keys["ours"])])
    signature = json.loads((folder / "signature.json").read_text())
    # Edited after signing, digest recomputed: the signature names another digest.
    edited = tampered(folder, tmp_path / "edited", lambda m: m["training"].update(note="x"), redigest=True)
    with pytest.raises(ArtifactError, match="changed after it was signed"):
        load(edited, trusted_keys=[keys["ours.pub"]])
    # ... and the signature's digest field edited to match: the signature no longer verifies.
    forged = dict(signature, digest=artifact_digest(json.loads((edited / "manifest.json").read_text())))
    (edited / "signature.json").write_text(json.dumps(forged))
    with pytest.raises(ArtifactError, match="does not verify"):
        load(edited, trusted_keys=[keys["ours.pub"]])
    # Re-signed by a stranger (even claiming our public key): refused.
    main(["sign", str(edited), "--key", str(keys["stranger"])])
    with pytest.raises(ArtifactError, match="not among the trusted keys"):
        load(edited, trusted_keys=[keys["ours.pub"]])
    claimed = dict(json.loads((edited / "signature.json").read_text()), public_key=signature["public_key"])
    (edited / "signature.json").write_text(json.dumps(claimed))
    with pytest.raises(ArtifactError, match="does not verify"):
        load(edited, trusted_keys=[keys["ours.pub"]])


def test_release_is_signed_and_bound_to_its_report(artifact, keys, tmp_path):
    digest = load(artifact).digest
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"artifact_digest": "0" * 64}))
    from safecritic.configs.errors import RunError

    with pytest.raises(RunError, match="certifies artifact 0000000000000000..., not this one"):
        release(artifact, report, tmp_path / "releases", "smoke", digest)
    (report / "report.json").write_text(json.dumps({"artifact_digest": digest}))
    target = release(artifact, report, tmp_path / "releases", "smoke", digest, sign_key=keys["ours"])
    assert target.name == f"smoke-{digest[:12]}" and (target / "report" / "report.json").is_file()
    assert load(target, trusted_keys=[keys["ours.pub"]]).digest == digest
    assert release(artifact, report, tmp_path / "releases", "smoke", digest, sign_key=keys["ours"]) == target
    with pytest.raises(RunError, match="signed by key .* never re-signed in place"):
        release(artifact, report, tmp_path / "releases", "smoke", digest, sign_key=keys["stranger"])


def test_evaluate_and_certify_refuse_a_bad_artifact_with_exit_2(artifact, tmp_path, capsys):
    """No traceback, no certification of an artifact whose manifest widened its threshold."""
    missing = tampered(artifact, tmp_path / "missing", lambda m: m.pop("dataset"), redigest=True)
    assert main(["evaluate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "field 'dataset' is missing" in err and "Traceback" not in err
    widened = tampered(artifact, tmp_path / "widened", lambda m: m["thresholds"].update(cost=1.5), redigest=True)
    assert main(["certify", str(widened), "--no-release"]) == 2
    assert "thresholds.cost is 1.5" in capsys.readouterr().err
    assert main(["certify", str(artifact), "--sign-key", str(tmp_path / "nokey")]) == 2  # before any rollout
    assert "cannot read it" in capsys.readouterr().err


def test_evaluate_and_certify_with_trusted_keys_run_only_a_signed_artifact(artifact, keys, tmp_path, capsys):
    """--trusted-key: an unsigned or foreign-signed artifact exits 2 before any episode; a signed one is
    certified and the report names its signer."""
    folder = tampered(artifact, tmp_path / "signed")
    (folder / "evaluation.json").unlink(missing_ok=True)  # copied along when an earlier test evaluated the shared artifact
    tiny = ["-o", "deploy.episodes=1", "--no-release"]
    assert main(["certify", str(folder), "--trusted-key", str(keys["ours.pub"]), *tiny]) == 2
    assert "is not signed" in capsys.readouterr().err
    assert main(["sign", str(folder), "--key", str(keys["stranger"])]) == 0
    assert main(["evaluate", str(folder), "--trusted-key", str(keys["ours.pub"]), "-o", "deploy.episodes=1"]) == 2
    assert "not among the trusted keys" in capsys.readouterr().err
    assert not (folder / "evaluation.json").exists()  # refused before any episode ran
    assert main(["sign", str(folder), "--key", str(keys["ours"])]) == 0
    capsys.readouterr()
    code = main(["certify", str(folder), "--trusted-key", str(keys["stranger.pub"]), "--trusted-key",
                 str(keys["ours.pub"]), *tiny])
    assert code in (0, 1) and "signature verified: signed by" in capsys.readouterr().out
    signer = json.loads((folder / "signature.json").read_text())["key_id"]
    assert json.loads((folder / "report" / "report.json").read_text())["signed_by"] == signer
