"""Load and run an exported controller with torch and numpy only.

This module is what a robot imports. It reads nothing from the training code: the
artifact's manifest says everything (spaces, thresholds, record layout), and nothing in
it is taken on trust. At load it checks, before torch parses a byte:

- the manifest's structure (every field the runtime or certification reads, with its type);
- the artifact digest: SHA-256 of the manifest's canonical JSON, which lists the SHA-256 of
  every payload file, so one digest covers the module and the manifest together;
- with `trusted_keys`, an Ed25519 signature of that digest by one of those keys (only then
  is the `cryptography` package imported);

and then, with the module loaded, that the facts the exporter embedded in the module
(spaces, action bounds, thresholds, candidates, safe action) agree with the manifest, so an
edited manifest or a foreign module is refused. At run time actions are clamped to the
bounds and a non-finite action is replaced by the safe action with fault code 3, whatever
the module does.

    from safecritic.deploy.runtime import load
    controller = load("releases/<run name>-1a2b3c4d5e6f")              # or trusted_keys=["release.pub"]
    action, record = controller.act(observation)      # numpy in, numpy out
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

# Duplicated from deploy/artifact.py on purpose: this file must stand alone on a robot
# (tests/test_release.py checks that the two agree).
FORMAT_VERSION = 2
CONTROLLER_FILE = "controller.pt"
MANIFEST_FILE = "manifest.json"
DIGEST_FILE = "digest"
SIGNATURE_FILE = "signature.json"
FACTS_ATTRIBUTE = "artifact_facts"
SIGNATURE_ALGORITHM = "ed25519"
SIGNATURE_CONTEXT = b"safecritic artifact digest v2\n"  # what is signed: this, then the digest's hex
CODE_FAULT = 3
REEXPORT = "re-export it from its run with `safecritic export RUN_DIR`"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ArtifactError(ValueError):
    """The artifact is missing, tampered with, truncated, unsigned or of an unknown format."""


class ObservationError(ValueError):
    """An observation of the wrong shape or type."""


class Verified(NamedTuple):
    """What read_verified checked: the manifest, the bytes of every file it lists, the artifact
    digest, and the id of the trusted key that signed it (None when no keys were asked for)."""

    manifest: dict[str, Any]
    files: dict[str, bytes]
    digest: str
    signer: str | None


# ----- manifest structure ------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _is_finite_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_number(x) and math.isfinite(x) for x in v)


_KINDS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "positive int": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "number": (_is_number, "a number (not NaN)"),
    "finite number": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str or null": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
    "finite numbers": (_is_finite_list, "a list of finite numbers"),
    "strings": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
                "a non-empty list of strings"),
    "dim": (lambda v: isinstance(v, list) and len(v) == 1 and isinstance(v[0], int) and not isinstance(v[0], bool)
            and v[0] > 0, "a list of one positive integer"),
}

# Every field the runtime, the evaluation or the report reads: nested dicts are sub-objects.
MANIFEST_SPEC: dict[str, Any] = {
    "format_version": "int",
    "created": "str",
    "safecritic_version": "str",
    "torch_version": "str",
    "variant": {"name": "str", "description": "str"},
    "files": "object",
    "observation_space": {"shape": "dim", "dtype": "str"},
    "action_space": {"shape": "dim", "low": "finite numbers", "high": "finite numbers"},
    "thresholds": {"cost": "number", "ood": "number", "ood_false_alarm_rate": "number"},
    "candidates": "positive int",
    "safe_action": {"constant": "finite numbers", "module": "str or null"},
    "record_fields": "strings",
    "decisions": "object",
    "parity_max_abs_diff": "finite number",
    "dataset": {"id": "str", "sha256": "str"},
    "config": "object",
    "training": "object",
}

# What the exporter embeds in the module (FACTS_ATTRIBUTE, canonical JSON), checked against the manifest.
FACTS_SPEC: dict[str, Any] = {
    "format_version": "int",
    "obs_dim": "positive int",
    "act_dim": "positive int",
    "act_low": "finite numbers",
    "act_high": "finite numbers",
    "cost_threshold": "number",
    "ood_threshold": "number",
    "ood_false_alarm_rate": "number",
    "candidates": "positive int",
    "safe_action": "finite numbers",
    "record_fields": "strings",
}


def _json_type(v: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), "a number")


def check_structure(data: Any, spec: dict[str, Any], where: str, prefix: str = "") -> None:
    """Raise ArtifactError naming the first missing or mistyped field of `data` against `spec`."""
    if not isinstance(data, dict):
        raise ArtifactError(f"{where}: {prefix.rstrip('.') or 'the top level'} must be a JSON object, got "
                            f"{_json_type(data)}; {REEXPORT}")
    for key, kind in spec.items():
        name = prefix + key
        if key not in data:
            raise ArtifactError(f"{where}: field '{name}' is missing; {REEXPORT}")
        value = data[key]
        if isinstance(kind, dict):
            check_structure(value, kind, where, name + ".")
            continue
        test, description = _KINDS[kind]
        if not test(value):
            raise ArtifactError(f"{where}: field '{name}' must be {description}, got {_json_type(value)} "
                                f"{json.dumps(value, default=str)[:60]}; {REEXPORT}")


def _check_manifest(manifest: Any, where: str) -> None:
    """Structure, then the relations between fields (sizes, bounds, file names)."""
    if isinstance(manifest, dict) and manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version")
        hint = (f"format version {version} was written by an older safecritic, before the digest over module and "
                f"manifest and the facts embedded in the module: {REEXPORT}") if version == 1 else \
            f"format version {version!r}, this runtime reads {FORMAT_VERSION}: {REEXPORT} with a matching safecritic"
        raise ArtifactError(f"{where}: {hint}")
    check_structure(manifest, MANIFEST_SPEC, where)
    act_dim = manifest["action_space"]["shape"][0]
    low, high = manifest["action_space"]["low"], manifest["action_space"]["high"]
    for name, values in (("action_space.low", low), ("action_space.high", high),
                         ("safe_action.constant", manifest["safe_action"]["constant"])):
        if len(values) != act_dim:
            raise ArtifactError(f"{where}: '{name}' has {len(values)} entries, action_space.shape says {act_dim}; {REEXPORT}")
    if any(lo > hi for lo, hi in zip(low, high)):
        raise ArtifactError(f"{where}: action_space.low exceeds action_space.high somewhere; {REEXPORT}")
    if manifest["observation_space"]["dtype"] != "float32":
        raise ArtifactError(f"{where}: observation_space.dtype must be 'float32'; {REEXPORT}")
    if "code" not in manifest["record_fields"]:
        raise ArtifactError(f"{where}: record_fields lacks 'code'; {REEXPORT}")
    decisions = manifest["decisions"]
    if not all(k.isdigit() and isinstance(v, str) for k, v in decisions.items()) or str(CODE_FAULT) not in decisions:
        raise ArtifactError(f"{where}: 'decisions' must map integer codes to names, the fault code {CODE_FAULT} "
                            f"among them; {REEXPORT}")
    files = manifest["files"]
    if CONTROLLER_FILE not in files:
        raise ArtifactError(f"{where}: 'files' does not list {CONTROLLER_FILE}; {REEXPORT}")
    for name, sha in files.items():
        if not _FILE_NAME.fullmatch(name) or name in (MANIFEST_FILE, DIGEST_FILE, SIGNATURE_FILE):
            raise ArtifactError(f"{where}: 'files' names {name!r}, not a plain payload file name in the artifact "
                                f"folder; {REEXPORT}")
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise ArtifactError(f"{where}: files[{name!r}] must be a lowercase hex SHA-256; {REEXPORT}")


# ----- digest and signature ----------------------------------------------------------------

def canonical_json(data: Any) -> bytes:
    """The one serialisation the digest is taken of (key order and whitespace do not count)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def artifact_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON; the manifest lists every file's SHA-256, so
    this one digest covers the whole artifact (it names releases and binds reports)."""
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def signed_message(digest: str) -> bytes:
    """The bytes an artifact's signature is over (a context prefix, then the digest's hex)."""
    return SIGNATURE_CONTEXT + digest.encode()


def _raw_public_key(key: str | os.PathLike | bytes) -> bytes:
    """A trusted key: a PEM file's path (`safecritic keygen` writes OUT.pub), or its PEM bytes,
    or the raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(key, bytes) and len(key) == 32:
        return key
    if isinstance(key, bytes):
        data, where = key, "a trusted key given as bytes"
    else:
        try:
            data, where = Path(key).read_bytes(), str(key)
        except OSError as exc:
            raise ArtifactError(f"trusted key {key}: cannot read it ({exc.strerror}); pass the .pub file "
                                "`safecritic keygen` wrote") from None
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError:
        raise ArtifactError(f"{where} is not a PEM public key: pass the .pub file `safecritic keygen` wrote, "
                            "not the private key") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ArtifactError(f"{where} is not an Ed25519 public key (`safecritic keygen` writes one)")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public_key: bytes) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


SIGNATURE_SPEC = {"algorithm": "str", "digest": "str", "key_id": "str", "public_key": "str", "signature": "str"}


def read_signature(folder: Path) -> dict[str, Any] | None:
    """signature.json, structure checked; None when the artifact is unsigned."""
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        return None
    try:
        signature = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}): sign the artifact again") from None
    check_structure(signature, SIGNATURE_SPEC, str(path))
    if signature["algorithm"] != SIGNATURE_ALGORITHM:
        raise ArtifactError(f"{path}: algorithm {signature['algorithm']!r}, this runtime verifies {SIGNATURE_ALGORITHM}")
    return signature


def _verify_signature(folder: Path, digest: str, signature: dict[str, Any] | None,
                      trusted_keys: Sequence[str | os.PathLike | bytes]) -> str:
    """The id of the trusted key whose signature over `digest` verifies, else ArtifactError."""
    if not trusted_keys:
        raise ArtifactError("trusted_keys is empty: give the public key file(s) releases are signed with, "
                            "or None to load without a signature check")
    if signature is None:
        raise ArtifactError(f"{folder} is not signed ({SIGNATURE_FILE} not found) and trusted keys were given: "
                            f"sign it with `safecritic sign {folder} --key PRIVATE_KEY` (or release it with "
                            "`safecritic certify ... --sign-key PRIVATE_KEY`)")
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise ArtifactError("checking signatures needs the cryptography package: "
                            "pip install 'safecritic[sign]' (or cryptography>=42)") from None
    trusted = {key_id(raw): raw for raw in (_raw_public_key(k) for k in trusted_keys)}
    try:
        claimed = bytes.fromhex(signature["public_key"])
        sig = bytes.fromhex(signature["signature"])
    except ValueError:
        raise ArtifactError(f"{folder / SIGNATURE_FILE}: public_key and signature must be hex; sign it again") from None
    raw = trusted.get(key_id(claimed))
    if raw is None:
        raise ArtifactError(f"{folder} is signed by key {key_id(claimed)}, which is not among the trusted keys "
                            f"({', '.join(trusted)}): refusing it; trust that key only if you know whose it is")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(sig, signed_message(digest))
    except InvalidSignature:
        raise ArtifactError(f"{folder}: the signature by trusted key {key_id(raw)} does not verify: the artifact or "
                            f"{SIGNATURE_FILE} was altered after signing; refusing it. Re-copy the release") from None
    return key_id(raw)


# ----- reading and loading -----------------------------------------------------------------

def read_verified(artifact_dir: str | os.PathLike,
                  trusted_keys: Sequence[str | os.PathLike | bytes] | None = None) -> Verified:
    """The manifest and payload bytes of an artifact folder, after checking the manifest's
    structure and format version, the digest over manifest and files, and (with
    `trusted_keys`) the signature. No torch involved: a robot checks before parsing a byte."""
    folder = Path(artifact_dir)
    manifest_path, digest_path = folder / MANIFEST_FILE, folder / DIGEST_FILE
    if not manifest_path.is_file():
        if (folder / "artifact" / MANIFEST_FILE).is_file():  # a run directory given for its artifact
            raise ArtifactError(f"{folder} is a run directory, not an artifact folder: its exported controller "
                                f"is in {folder / 'artifact'}; pass that folder")
        raise ArtifactError(f"{manifest_path} not found: an artifact folder holds {MANIFEST_FILE}, {DIGEST_FILE} "
                            f"and {CONTROLLER_FILE} (write one with `safecritic export RUN_DIR`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); {REEXPORT}") from None
    _check_manifest(manifest, str(manifest_path))
    digest = artifact_digest(manifest)
    try:
        recorded = digest_path.read_text().strip()
    except OSError:
        raise ArtifactError(f"{digest_path} not found: the export did not finish or the file was lost; {REEXPORT}") from None
    if recorded != digest:
        raise ArtifactError(f"{manifest_path} does not match the artifact digest in {digest_path} (SHA-256 "
                            f"{digest[:16]}... vs {recorded[:16]}...): the manifest was edited; refusing to load it. "
                            "Restore the original manifest or re-export the artifact")
    files: dict[str, bytes] = {}
    for name, expected in manifest["files"].items():
        path = folder / name
        try:
            blob = path.read_bytes()
        except OSError:
            raise ArtifactError(f"{path} not found: the manifest lists it; re-copy the whole artifact folder") from None
        actual = hashlib.sha256(blob).hexdigest()
        if actual != expected:
            raise ArtifactError(f"{path} does not match its manifest (SHA-256 {actual[:16]}... vs {expected[:16]}...): "
                                "the file was modified or truncated; refusing to load it. Re-export or re-copy the artifact")
        files[name] = blob
    signature = read_signature(folder)
    if signature is not None and signature["digest"] != digest:
        raise ArtifactError(f"{folder / SIGNATURE_FILE} signs digest {signature['digest'][:16]}..., the artifact's is "
                            f"{digest[:16]}...: the artifact changed after it was signed; refusing it")
    signer = _verify_signature(folder, digest, signature, trusted_keys) if trusted_keys is not None else None
    return Verified(manifest, files, digest, signer)


def _as_float32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32).reshape(-1)


def module_facts(module: torch.jit.ScriptModule, where: str) -> dict[str, Any]:
    """The facts the exporter embedded in the (unfrozen) module, structure checked."""
    try:
        text = getattr(module, FACTS_ATTRIBUTE)
    except AttributeError:
        text = None
    if not isinstance(text, str):
        raise ArtifactError(f"{where} carries no '{FACTS_ATTRIBUTE}': it is not a controller written by "
                            f"`safecritic export` (format {FORMAT_VERSION}); refusing it. Restore the original file or "
                            f"{REEXPORT}")
    try:
        facts = json.loads(text)
    except ValueError:
        raise ArtifactError(f"{where}: its '{FACTS_ATTRIBUTE}' is not JSON; {REEXPORT}") from None
    check_structure(facts, FACTS_SPEC, f"{where} ({FACTS_ATTRIBUTE})")
    return facts


def cross_check(manifest: dict[str, Any], facts: dict[str, Any], module: torch.jit.ScriptModule, where: str) -> None:
    """Refuse a manifest that says other than the module: spaces, bounds, thresholds, candidates,
    safe action (floats compared in float32, the module's precision). Where the module holds
    the buffers it computes with, they must equal the facts too."""
    pairs = [
        ("format_version", manifest["format_version"], facts["format_version"], False),
        ("observation_space.shape", manifest["observation_space"]["shape"], [facts["obs_dim"]], False),
        ("action_space.shape", manifest["action_space"]["shape"], [facts["act_dim"]], False),
        ("action_space.low", manifest["action_space"]["low"], facts["act_low"], True),
        ("action_space.high", manifest["action_space"]["high"], facts["act_high"], True),
        ("thresholds.cost", manifest["thresholds"]["cost"], facts["cost_threshold"], True),
        ("thresholds.ood", manifest["thresholds"]["ood"], facts["ood_threshold"], True),
        ("thresholds.ood_false_alarm_rate", manifest["thresholds"]["ood_false_alarm_rate"],
         facts["ood_false_alarm_rate"], True),
        ("candidates", manifest["candidates"], facts["candidates"], False),
        ("safe_action.constant", manifest["safe_action"]["constant"], facts["safe_action"], True),
        ("record_fields", manifest["record_fields"], facts["record_fields"], False),
    ]
    for name, said, held, numeric in pairs:
        same = (np.array_equal(_as_float32(said), _as_float32(held)) if numeric else said == held)
        if not same:
            raise ArtifactError(f"{where}: the manifest's {name} is {json.dumps(said)[:80]} but the controller module "
                                f"holds {json.dumps(held)[:80]}: the manifest was edited or belongs to another module; "
                                f"refusing to load it. Restore the original manifest or {REEXPORT}")
    operative = {"act_low": facts["act_low"], "act_high": facts["act_high"], "safe_action": facts["safe_action"],
                 "cost_threshold": facts["cost_threshold"], "ood_threshold": facts["ood_threshold"]}
    for name, fact in operative.items():
        buffer = getattr(module, name, None)
        if isinstance(buffer, torch.Tensor) and not np.array_equal(_as_float32(buffer.detach().numpy()),
                                                                    _as_float32(fact)):
            raise ArtifactError(f"{where}: the module computes with {name} = {buffer.tolist()} but states "
                                f"{fact} in its facts: a doctored module; refusing it. {REEXPORT[0].upper() + REEXPORT[1:]}")


class Controller:
    """A loaded controller: `act(obs)` for one observation or a batch."""

    def __init__(self, module: torch.jit.ScriptModule, manifest: dict[str, Any], digest: str = "",
                 signer: str | None = None) -> None:
        self.module = module
        self.manifest = manifest
        self.digest = digest
        self.signer = signer
        self.obs_dim = int(manifest["observation_space"]["shape"][0])
        self.act_dim = int(manifest["action_space"]["shape"][0])
        self.record_fields: list[str] = list(manifest["record_fields"])
        self.decisions = {int(k): v for k, v in manifest["decisions"].items()}
        # The runtime's own guards (act): the manifest's bounds and safe action, checked against the module at load.
        self._low = torch.from_numpy(_as_float32(manifest["action_space"]["low"]))
        self._high = torch.from_numpy(_as_float32(manifest["action_space"]["high"]))
        self._safe = torch.from_numpy(_as_float32(manifest["safe_action"]["constant"]))
        self._fault_record = torch.full((len(self.record_fields),), float("nan"))
        self._fault_record[self.record_fields.index("code")] = CODE_FAULT

    def _check(self, obs: Any) -> tuple[np.ndarray, bool]:
        try:
            array = np.asarray(obs)
        except ValueError as exc:  # ragged nested lists
            raise ObservationError(f"observation is not a rectangular array ({exc}); give ({self.obs_dim},) or "
                                   f"(batch, {self.obs_dim}) numbers") from None
        if array.dtype.kind not in "fiu":
            raise ObservationError(
                f"observation must be numeric (float32 preferred), got dtype {array.dtype}; convert it with "
                "np.asarray(obs, dtype=np.float32)"
            )
        single = array.ndim == 1
        if array.ndim not in (1, 2) or array.shape[-1] != self.obs_dim:
            raise ObservationError(
                f"observation must have shape ({self.obs_dim},) or (batch, {self.obs_dim}), got {array.shape}; "
                f"this controller was trained on {self.obs_dim}-dim observations of {self.manifest['dataset']['id']}"
            )
        if array.shape[0] == 0:
            raise ObservationError(f"an empty batch of observations (shape {array.shape}): give at least one")
        return np.ascontiguousarray(array, dtype=np.float32).reshape(-1, self.obs_dim), single

    def act(self, obs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Action(s) and decision record(s). Non-finite observations or actions give the safe
        action and code 3; actions are clamped to the manifest's bounds whatever the module does."""
        batch, single = self._check(obs)
        with torch.inference_mode():
            action, record = self.module(torch.from_numpy(batch))
            # Both guards in torch and plain Python: right after the module a numpy ufunc costs
            # ~10 µs (measured, docs/design.md "Integrity"), torch.clamp ~3 µs. The double sum of
            # float32 entries cannot overflow, so it is non-finite iff an entry is.
            if not math.isfinite(sum(action.reshape(-1).tolist())):
                finite = torch.isfinite(action).all(dim=1, keepdim=True)
                action = torch.where(finite, action, self._safe)
                record = torch.where(finite, record, self._fault_record)
            action = torch.clamp(action, self._low, self._high)
        action, record = action.numpy(), record.numpy()
        return (action[0], record[0]) if single else (action, record)

    def explain(self, record: np.ndarray) -> dict[str, Any]:
        """A record as a dict with the decision's name."""
        out = {name: float(v) for name, v in zip(self.record_fields, record)}
        out["decision"] = self.decisions.get(int(out["code"]), "unknown")
        return out


def _probe(module: torch.jit.ScriptModule, manifest: dict[str, Any], where: str) -> None:
    """One call on zeros: the module must take the manifest's observations and return the
    manifest's action and record widths (a module that cannot is refused at load, not mid-run)."""
    obs_dim, act_dim = manifest["observation_space"]["shape"][0], manifest["action_space"]["shape"][0]
    try:
        with torch.inference_mode():
            out = module(torch.zeros(2, obs_dim))
    except Exception as exc:
        raise ArtifactError(f"{where} fails on a ({2}, {obs_dim}) observation batch ({exc.__class__.__name__}); "
                            f"refusing it. {REEXPORT[0].upper() + REEXPORT[1:]}") from None
    shapes = (2, act_dim), (2, len(manifest["record_fields"]))
    if (not isinstance(out, tuple) or len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out)
            or tuple(out[0].shape) != shapes[0] or tuple(out[1].shape) != shapes[1]
            or out[0].dtype != torch.float32 or out[1].dtype != torch.float32):
        raise ArtifactError(f"{where} does not return float32 (action {shapes[0]}, record {shapes[1]}) for a batch of 2; "
                            f"refusing it. {REEXPORT[0].upper() + REEXPORT[1:]}")


def load(artifact_dir: str | os.PathLike, threads: int | None = 1,
         trusted_keys: Sequence[str | os.PathLike | bytes] | None = None) -> Controller:
    """Verify and load an artifact folder (manifest.json, digest, controller.pt, [signature.json]).

    `threads`: torch intra-op threads for inference (1 suits batch-1 control loops;
    None leaves torch's setting alone). `trusted_keys`: Ed25519 public keys (paths of the
    .pub files `safecritic keygen` writes, or their bytes); when given, an artifact not
    signed by one of them is refused. Without them nothing beyond torch and numpy is needed.
    """
    verified = read_verified(artifact_dir, trusted_keys)
    manifest = verified.manifest
    where = str(Path(artifact_dir) / CONTROLLER_FILE)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        # Load the bytes that were verified, not the file again (no window for a swap).
        module = torch.jit.load(io.BytesIO(verified.files[CONTROLLER_FILE]), map_location="cpu")
    except Exception as exc:  # a valid hash of a broken file can only come from a broken export
        raise ArtifactError(f"{where} could not be loaded by torch.jit ({exc.__class__.__name__}); {REEXPORT}") from None
    cross_check(manifest, module_facts(module, where), module, where)
    module.eval()
    # Freezing inlines the weights as constants: outputs were identical to the unfrozen
    # module's in a side-by-side check (tests hold them to the parity bound), and batch-1
    # p99 latency dropped from 374 to 257 µs (fewer attribute look-ups in the interpreter).
    try:
        module = torch.jit.freeze(module)
    except Exception as exc:
        raise ArtifactError(f"{where} could not be frozen for inference ({exc.__class__.__name__}); {REEXPORT}") from None
    _probe(module, manifest, where)
    return Controller(module, manifest, verified.digest, verified.signer)
