"""Adversarial checks of the artifact and the runtime: does every mutation or hostile input
end in a clear refusal, or in a bounded, finite action?

    python bench/adversarial_artifact.py                       # exports a smoke artifact first
    python bench/adversarial_artifact.py --artifact runs/pointnav/artifact --out runs/bench/adversarial_artifact.json

Classes (each trial counts as handled or as a failure with a short description):

- artifact tamper: every manifest field deleted, retyped and (where it is a fact of the module)
  widened, with the digest left alone and recomputed by a forger; the digest, the file list
  and the format version broken; byte flips and truncations of controller.pt, plain and with
  the hashes recomputed; foreign TorchScript modules. Handled: ArtifactError; or, where the
  forger recomputed every hash and the change cannot be told from the bytes (a flipped
  weight, a module forging the facts), the artifact loads and its actions stay finite and
  within the bounds.
- signed release: loaded with trusted_keys: unsigned, signed by a stranger, edited after
  signing, signature fields forged. Handled: ArtifactError, always.
- runtime fuzz: random, extreme, NaN/inf, ragged, empty, wrong-shape and wrong-dtype
  observations. Handled: ObservationError, or finite actions within the bounds with fault
  code 3 on every non-finite row.

bench/adversarial.py imports `run` (same return shape as its own classes).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.deploy.runtime import (MANIFEST_SPEC, ArtifactError, ObservationError, artifact_digest,  # noqa: E402
                                       load)

REFUSE, REFUSE_OR_GUARD = "refuse", "refuse or guard"
RETYPES: list[Any] = [None, "x", 7, -1, True, [], {}, [1, "a"], 1e400]


def _fields(spec: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, kind in spec.items():
        out.append(prefix + (key,))
        if isinstance(kind, dict):
            out += _fields(kind, prefix + (key,))
    return out


def _set(manifest: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(manifest: dict[str, Any], path: tuple[str, ...]) -> None:
    node = manifest
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def _get(manifest: dict[str, Any], path: tuple[str, ...]) -> Any:
    node = manifest
    for key in path:
        node = node[key]
    return node


class Artifacts:
    """Mutated copies of one artifact folder, made and removed one at a time."""

    def __init__(self, source: Path, workdir: Path) -> None:
        self.source, self.workdir = Path(source), Path(workdir)
        self.manifest = json.loads((self.source / "manifest.json").read_text())
        self.blob = (self.source / "controller.pt").read_bytes()
        self.count = 0

    def copy(self) -> Path:
        self.count += 1
        folder = self.workdir / f"case{self.count}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(self.source, folder)
        return folder

    @staticmethod
    def write_manifest(folder: Path, manifest: Any, redigest: bool) -> None:
        (folder / "manifest.json").write_text(json.dumps(manifest))
        if redigest:
            (folder / "digest").write_text(artifact_digest(manifest) + "\n")

    def with_controller(self, folder: Path, blob: bytes, rehash: bool) -> None:
        (folder / "controller.pt").write_bytes(blob)
        if rehash:
            manifest = copy.deepcopy(self.manifest)
            manifest["files"]["controller.pt"] = hashlib.sha256(blob).hexdigest()
            self.write_manifest(folder, manifest, redigest=True)


def _guarded(controller: Any) -> str | None:
    """None when the loaded controller's actions on hostile-but-valid observations are finite and in bounds."""
    low = np.asarray(controller.manifest["action_space"]["low"], np.float32)
    high = np.asarray(controller.manifest["action_space"]["high"], np.float32)
    rng = np.random.default_rng(0)
    obs = np.concatenate([rng.normal(0, s, (16, controller.obs_dim)) for s in (1.0, 1e3, 1e30)]).astype(np.float32)
    action, _ = controller.act(obs)
    if not np.isfinite(action).all() or (action < low).any() or (action > high).any():
        return "loaded and acted out of bounds or non-finite"
    return None


def outcome(folder: Path, expect: str, trusted_keys: list[Path] | None = None) -> str | None:
    """None when the trial is handled as `expect` allows, else what went wrong."""
    try:
        controller = load(folder, threads=None, trusted_keys=trusted_keys)
    except ArtifactError:
        return None
    except Exception as exc:  # anything else is an unclear error
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    if expect == REFUSE:
        return "loaded"
    try:
        return _guarded(controller)
    except Exception as exc:
        return f"acting raised {type(exc).__name__}"


class Tally:
    def __init__(self) -> None:
        self.tried, self.handled, self.failures = 0, 0, []

    def add(self, name: str, failure: str | None) -> None:
        self.tried += 1
        if failure is None:
            self.handled += 1
        else:
            self.failures.append(f"{name}: {failure}")

    def as_dict(self) -> dict[str, Any]:
        return {"tried": self.tried, "handled": self.handled, "failures": self.failures}


class Wild(torch.nn.Module):
    """A foreign controller-shaped module: every action is `value`."""

    def __init__(self, value: float, act_dim: int, record: int) -> None:
        super().__init__()
        self.value, self.act_dim, self.record = value, act_dim, record

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        return torch.full((b, self.act_dim), self.value), torch.zeros(b, self.record)


class Raising(torch.nn.Module):
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise RuntimeError("no")


def _script_bytes(module: torch.nn.Module) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def artifact_tamper(arts: Artifacts) -> Tally:
    tally = Tally()
    m0 = arts.manifest

    def trial(name: str, manifest: Any, redigest: bool, expect: str = REFUSE) -> None:
        folder = arts.copy()
        arts.write_manifest(folder, manifest, redigest)
        tally.add(name, outcome(folder, expect))
        shutil.rmtree(folder)

    for path in _fields(MANIFEST_SPEC):
        dotted = ".".join(path)
        for redigest in (False, True):
            tag = "digest recomputed" if redigest else "digest kept"
            deleted = copy.deepcopy(m0)
            _delete(deleted, path)
            trial(f"delete {dotted} ({tag})", deleted, redigest)
            original = _get(m0, path)
            for value in RETYPES:
                if type(value) is type(original) or (value is None and path[-1] == "module"):
                    continue  # not a retype
                if isinstance(original, (int, float)) and not isinstance(original, bool) and isinstance(value, (int, float)) \
                        and not isinstance(value, bool) and value == value and abs(value) != float("inf"):
                    continue  # a number for a number: a widening, below
                retyped = copy.deepcopy(m0)
                _set(retyped, path, value)
                trial(f"retype {dotted} -> {json.dumps(value)} ({tag})", retyped, redigest)
    act_dim = m0["action_space"]["shape"][0]
    widenings: dict[str, Callable[[dict[str, Any]], None]] = {
        "thresholds.cost 0.05 -> 1.5": lambda m: m["thresholds"].update(cost=1.5),
        "thresholds.cost x10": lambda m: m["thresholds"].update(cost=m["thresholds"]["cost"] * 10),
        "thresholds.ood x10": lambda m: m["thresholds"].update(ood=m["thresholds"]["ood"] * 10),
        "thresholds.ood +1e-3": lambda m: m["thresholds"].update(ood=m["thresholds"]["ood"] + 1e-3),
        "action_space.high 100": lambda m: m["action_space"].update(high=[100.0] * act_dim),
        "action_space.low -100": lambda m: m["action_space"].update(low=[-100.0] * act_dim),
        "action_space.shape +1": lambda m: m["action_space"].update(shape=[act_dim + 1]),
        "observation_space.shape +1": lambda m: m["observation_space"].update(
            shape=[m["observation_space"]["shape"][0] + 1]),
        "observation_space.shape -1": lambda m: m["observation_space"].update(
            shape=[m["observation_space"]["shape"][0] - 1]),
        "candidates 1": lambda m: m.update(candidates=1),
        "candidates x4": lambda m: m.update(candidates=m["candidates"] * 4),
        "safe_action.constant moved": lambda m: m["safe_action"].update(constant=[0.5] * act_dim),
        "record_fields reordered": lambda m: m.update(record_fields=m["record_fields"][::-1]),
        "format_version 1": lambda m: m.update(format_version=1),
        "format_version 3": lambda m: m.update(format_version=3),
        "files: path outside the folder": lambda m: m["files"].update({"../x": "0" * 64}),
        "files: a listed file that is absent": lambda m: m["files"].update({"controller.onnx": "0" * 64}),
        "files: the manifest listed as payload": lambda m: m["files"].update({"manifest.json": "0" * 64}),
        "files: hash not hex": lambda m: m["files"].update({"controller.pt": "z" * 64}),
    }
    for name, edit in widenings.items():
        for redigest in (False, True):
            widened = copy.deepcopy(m0)
            edit(widened)
            trial(f"{name} ({'digest recomputed' if redigest else 'digest kept'})", widened, redigest)
    for redigest in (False, True):
        trial(f"manifest a JSON list ({redigest})", [m0], redigest)
        trial(f"manifest empty object ({redigest})", {}, redigest)
    # Informational fields edited without recomputing the digest: the digest alone catches them.
    for path in (("created",), ("variant", "description"), ("dataset", "id"), ("training",), ("config",)):
        edited = copy.deepcopy(m0)
        _set(edited, path, "edited" if path != ("training",) and path != ("config",) else {})
        trial(f"edit {'.'.join(path)} (digest kept)", edited, redigest=False)
    for name, writer in (("digest missing", lambda f: (f / "digest").unlink()),
                         ("digest garbage", lambda f: (f / "digest").write_text("not a digest")),
                         ("digest of another manifest", lambda f: (f / "digest").write_text("0" * 64)),
                         ("manifest not JSON", lambda f: (f / "manifest.json").write_text("{")),
                         ("manifest missing", lambda f: (f / "manifest.json").unlink()),
                         ("controller.pt missing", lambda f: (f / "controller.pt").unlink())):
        folder = arts.copy()
        writer(folder)
        tally.add(name, outcome(folder, REFUSE))
        shutil.rmtree(folder)
    rng = np.random.default_rng(0)
    for rehash in (False, True):
        for k, pos in enumerate(rng.integers(0, len(arts.blob), 30)):
            blob = bytearray(arts.blob)
            blob[int(pos)] ^= 1 << int(rng.integers(0, 8))
            folder = arts.copy()
            arts.with_controller(folder, bytes(blob), rehash)
            tally.add(f"byte flip at {int(pos)} ({'rehashed' if rehash else 'hash kept'})",
                      outcome(folder, REFUSE_OR_GUARD if rehash else REFUSE))
            shutil.rmtree(folder)
        for fraction in (0.0, 0.1, 0.5, 0.9, 0.999):
            folder = arts.copy()
            arts.with_controller(folder, arts.blob[: int(len(arts.blob) * fraction)], rehash)
            tally.add(f"truncated to {fraction:.1%} ({'rehashed' if rehash else 'hash kept'})",
                      outcome(folder, REFUSE_OR_GUARD if rehash else REFUSE))
            shutil.rmtree(folder)
    facts = torch.jit.load(str(arts.source / "controller.pt")).artifact_facts
    record = len(m0["record_fields"])
    foreign: list[tuple[str, torch.nn.Module, str | None, str]] = [
        ("foreign module without facts", Wild(1e6, act_dim, record), None, REFUSE),
        ("foreign module, facts forged, actions 1e6", Wild(1e6, act_dim, record), facts, REFUSE_OR_GUARD),
        ("foreign module, facts forged, actions -inf", Wild(float("-inf"), act_dim, record), facts, REFUSE_OR_GUARD),
        ("foreign module, facts forged, actions NaN", Wild(float("nan"), act_dim, record), facts, REFUSE_OR_GUARD),
        ("foreign module, facts forged, wrong action width", Wild(0.0, act_dim + 1, record), facts, REFUSE),
        ("foreign module, facts forged, wrong record width", Wild(0.0, act_dim, record + 1), facts, REFUSE),
        ("foreign module, facts forged, raises", Raising(), facts, REFUSE),
        ("foreign module, facts not JSON", Wild(0.0, act_dim, record), "{", REFUSE),
        ("foreign module, facts of another shape", Wild(0.0, act_dim, record),
         json.dumps({**json.loads(facts), "obs_dim": 99}), REFUSE),
    ]
    for name, module, forged, expect in foreign:
        if forged is not None:
            module.artifact_facts = forged
        folder = arts.copy()
        arts.with_controller(folder, _script_bytes(module), rehash=True)
        tally.add(name, outcome(folder, expect))
        shutil.rmtree(folder)
    folder = arts.copy()
    arts.with_controller(folder, b"not a zip file at all", rehash=True)
    tally.add("controller.pt not TorchScript (rehashed)", outcome(folder, REFUSE))
    shutil.rmtree(folder)
    return tally


def signed_release(arts: Artifacts) -> Tally:
    from safecritic.deploy.signing import generate_key, sign_artifact

    tally = Tally()
    keys = arts.workdir / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir(parents=True)
    ours, _ = generate_key(keys / "ours")
    stranger, _ = generate_key(keys / "stranger")
    trusted = [ours]

    def trial(name: str, mutate: Callable[[Path], None]) -> None:
        folder = arts.copy()
        sign_artifact(folder, keys / "ours")
        mutate(folder)
        tally.add(name, outcome(folder, REFUSE, trusted))
        shutil.rmtree(folder)

    def edit_manifest(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
        def mutate(folder: Path) -> None:
            manifest = json.loads((folder / "manifest.json").read_text())
            edit(manifest)
            arts.write_manifest(folder, manifest, redigest=True)
        return mutate

    def edit_signature(**fields: Any) -> Callable[[Path], None]:
        def mutate(folder: Path) -> None:
            signature = json.loads((folder / "signature.json").read_text())
            signature.update({k: (v(signature) if callable(v) else v) for k, v in fields.items()})
            (folder / "signature.json").write_text(json.dumps(signature))
        return mutate

    def resign_after(edit: Callable[[Path], None], key: str) -> Callable[[Path], None]:
        def mutate(folder: Path) -> None:
            edit(folder)
            sign_artifact(folder, keys / key)
        return mutate

    def resign_after_claiming(edit: Callable[[Path], None], key: Path, claimed: str) -> Callable[[Path], None]:
        def mutate(folder: Path) -> None:
            edit(folder)
            sign_artifact(folder, key)
            edit_signature(public_key=claimed)(folder)
        return mutate

    def flip_signature(s: dict[str, Any]) -> str:
        raw = bytearray(bytes.fromhex(s["signature"]))
        raw[5] ^= 1
        return raw.hex()

    widen = edit_manifest(lambda m: m["thresholds"].update(cost=1.5))
    trial("unsigned", lambda f: (f / "signature.json").unlink())
    trial("signed by a stranger", lambda f: sign_artifact(f, keys / "stranger"))
    trial("informational field edited after signing", edit_manifest(lambda m: m["variant"].update(description="x")))
    trial("training metrics edited after signing", edit_manifest(lambda m: m["training"].update(note="x")))
    trial("config (criteria) edited after signing", edit_manifest(lambda m: m["config"].update(note="x")))
    trial("threshold widened after signing", widen)
    described = edit_manifest(lambda m: m["variant"].update(description="x"))
    trial("edited and re-signed by a stranger", resign_after(described, "stranger"))
    trial("edited, re-signed by a stranger claiming our public key",
          resign_after_claiming(described, keys / "stranger", _raw_hex(ours)))
    trial("edited, signature's digest field set to match", lambda f: (
        described(f), edit_signature(digest=artifact_digest(json.loads((f / "manifest.json").read_text())))(f)))
    trial("signature bytes flipped", edit_signature(signature=flip_signature))
    trial("signature not hex", edit_signature(signature="zz"))
    trial("signature algorithm changed", edit_signature(algorithm="rsa"))
    trial("signature.json not JSON", lambda f: (f / "signature.json").write_text("{"))
    trial("signature.json a list", lambda f: (f / "signature.json").write_text("[]"))
    facts = torch.jit.load(str(arts.source / "controller.pt")).artifact_facts
    wild = Wild(1e6, arts.manifest["action_space"]["shape"][0], len(arts.manifest["record_fields"]))
    wild.artifact_facts = facts
    trial("foreign module with forged facts, hashes recomputed",
          lambda f: arts.with_controller(f, _script_bytes(wild), rehash=True))
    folder = arts.copy()
    sign_artifact(folder, keys / "ours")
    tally.add("trusted key list empty", outcome(folder, REFUSE, []))
    tally.add("private key given as the trusted key", outcome(folder, REFUSE, [keys / "ours"]))
    tally.add("only a stranger trusted", outcome(folder, REFUSE, [stranger]))
    good = outcome(folder, REFUSE, trusted)  # the control: a good signature must load
    tally.add("control: the untouched signed release loads", None if good == "loaded" else f"refused ({good})")
    shutil.rmtree(folder)
    return tally


def _raw_hex(public_pem: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(Path(public_pem).read_bytes())
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def runtime_fuzz(artifact: Path) -> Tally:
    tally = Tally()
    controller = load(artifact, threads=None)
    d = controller.obs_dim
    low = np.asarray(controller.manifest["action_space"]["low"], np.float32)
    high = np.asarray(controller.manifest["action_space"]["high"], np.float32)
    rng = np.random.default_rng(0)

    def trial(name: str, obs: Any) -> None:
        try:
            with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: a fault row, as intended
                action, record = controller.act(obs)
        except ObservationError:
            tally.add(name, None)
            return
        except Exception as exc:
            tally.add(name, f"{type(exc).__name__}: {str(exc)[:80]}")
            return
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(obs, dtype=np.float32).reshape(-1, d)
        action, record = np.atleast_2d(action), np.atleast_2d(record)
        bad_rows = ~np.isfinite(array).all(axis=1)
        if not np.isfinite(action).all():
            tally.add(name, "non-finite action")
        elif (action < low).any() or (action > high).any():
            tally.add(name, "action out of bounds")
        elif (record[bad_rows, 0] != 3).any():
            tally.add(name, "non-finite observation without fault code 3")
        elif (record[np.abs(np.nan_to_num(array)).max(axis=1) >= 1e20, 0] != 3).any():
            tally.add(name, "an observation far beyond the gate's judged limit without fault code 3")
        elif not np.isfinite(record[record[:, 0] != 3]).all():
            tally.add(name, "a decision (not a fault) recorded with non-finite values")
        else:
            tally.add(name, None)

    for scale in (1e-3, 1.0, 10.0, 1e3, 1e6, 1e12, 1e20, 1e30, 3e38):
        for batch in (1, 7, 64):
            with np.errstate(over="ignore"):  # 3e38 draws beyond float32: inf entries, fault rows
                obs = rng.normal(0, scale, (batch, d)).astype(np.float32)
            trial(f"normal scale {scale:g} batch {batch}", obs)
    for value in (np.nan, np.inf, -np.inf, np.finfo(np.float32).max, -np.finfo(np.float32).max,
                  np.finfo(np.float32).tiny, 0.0, -0.0):
        trial(f"all entries {value}", np.full(d, value, np.float32))
        trial(f"all entries {value}, batch 5", np.full((5, d), value, np.float32))
    for k in range(40):
        obs = rng.normal(0, 1, (8, d)).astype(np.float32)
        mask = rng.random((8, d)) < 0.1
        obs[mask] = rng.choice([np.nan, np.inf, -np.inf], mask.sum())
        trial(f"random NaN/inf entries #{k}", obs)
    trial("float64 beyond float32", np.full(d, 1e300))
    for dtype in (np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint64):
        trial(f"dtype {np.dtype(dtype).name}", (rng.normal(0, 3, (4, d))).astype(dtype))
    for name, obs in [
        ("ragged list", [[0.0] * d, [0.0] * (d - 1)]),
        ("list of lists", [[0.0] * d] * 3),
        ("plain list", [0.5] * d),
        ("empty batch", np.zeros((0, d), np.float32)),
        ("empty list", []),
        ("wrong width", np.zeros(d + 1, np.float32)),
        ("batch of wrong width", np.zeros((3, d - 1), np.float32)),
        ("3-d", np.zeros((2, 2, d), np.float32)),
        ("scalar", np.float32(1.0)),
        ("None", None),
        ("string", "0" * d),
        ("strings", ["a"] * d),
        ("bool", np.zeros(d, bool)),
        ("complex", np.zeros(d, np.complex64)),
        ("object array", np.array([object()] * d)),
        ("dict", {"obs": [0.0] * d}),
        ("torch tensor", torch.zeros(d)),
        ("non-contiguous", np.zeros((4, 2 * d), np.float32)[:, ::2]),
        ("huge batch", rng.normal(0, 1, (4096, d)).astype(np.float32)),
    ]:
        trial(name, obs)
    return tally


def run(workdir: Path, artifact_dir: Path) -> dict[str, dict]:
    """Per class: {"tried": n, "handled": m, "failures": [short descriptions]}."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    arts = Artifacts(Path(artifact_dir), workdir)
    return {"artifact tamper": artifact_tamper(arts).as_dict(), "signed release": signed_release(arts).as_dict(),
            "runtime fuzz": runtime_fuzz(Path(artifact_dir)).as_dict()}


def smoke_artifact(workdir: Path) -> Path:
    """Collect (if missing), train and export the smoke preset under workdir (about a minute)."""
    from safecritic.configs import load_config
    from safecritic.envs.minari_io import dataset_exists
    from safecritic.pipeline import collect, export, train

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    if not dataset_exists(config.data.dataset_id):
        collect(config)
    run_dir = workdir / "smoke_run"
    if not (run_dir / "artifact" / "digest").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        train(config, run_dir)
        export(run_dir)
    return run_dir / "artifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=None, help="artifact folder (default: export a smoke one)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/adversarial_artifact"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/adversarial_artifact.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    artifact = args.artifact or smoke_artifact(args.workdir)
    results = run(args.workdir / "cases", artifact)
    rows = [[name, r["tried"], r["handled"], len(r["failures"])] for name, r in results.items()]
    print(markdown_table(["class", "tried", "handled", "failures"], rows))
    for name, r in results.items():
        for failure in r["failures"]:
            print(f"  {name}: {failure}")
    write_json(args.out, {"machine": machine(), "artifact": str(artifact), "results": results})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
