"""Ed25519 keys and artifact signatures (needs the `cryptography` package: the `sign` extra).

A signature is over the artifact digest (runtime.signed_message), which covers the
manifest and, through its file list, every payload file: a signed release that is edited,
or re-signed by another key, does not verify against the keys a robot trusts
(runtime.load(..., trusted_keys=[...])). Verification lives in the runtime, which must
stand alone; this module writes keys and signatures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safecritic.configs.errors import RunError
from safecritic.configs.fileio import atomic_write_bytes, atomic_write_text
from safecritic.deploy.runtime import SIGNATURE_ALGORITHM, SIGNATURE_FILE, key_id, load, signed_message

PUBLIC_SUFFIX = ".pub"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise RunError("signing needs the cryptography package: pip install 'safecritic[sign]'") from None
    return serialization, Ed25519PrivateKey


def public_key_path(private_key: Path) -> Path:
    """Where keygen puts the public half: beside the private key, with .pub appended."""
    private_key = Path(private_key)
    return private_key.with_name(private_key.name + PUBLIC_SUFFIX)


def generate_key(out: Path) -> tuple[Path, str]:
    """Write a new Ed25519 private key to `out` (PEM, mode 0600) and its public key to
    out.pub (PEM); refuses to replace either. Returns (public key path, key id)."""
    serialization, Ed25519PrivateKey = _crypto()
    out, public_path = Path(out), public_key_path(out)
    for path in (out, public_path):
        if path.exists():
            raise RunError(f"{path} exists: keygen never replaces a key (releases signed with it would stop "
                           "verifying); choose another path or delete it first")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public = key.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write_bytes(out, private_pem)  # a mkstemp file: created 0600, never readable by others
    os.chmod(out, 0o600)
    atomic_write_bytes(public_path, public_pem)
    os.chmod(public_path, 0o644)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public_path, key_id(raw)


def _private_key(path: Path):
    serialization, Ed25519PrivateKey = _crypto()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RunError(f"signing key {path}: cannot read it ({exc.strerror}); make one with `safecritic keygen OUT`") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise RunError(f"{path} is not an unencrypted PEM private key: pass the private key `safecritic keygen` "
                       f"wrote (not its {PUBLIC_SUFFIX} file)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RunError(f"{path} is not an Ed25519 key (`safecritic keygen` writes one)")
    return key


def _raw(key) -> bytes:
    serialization, _ = _crypto()
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signer_id(private_key: Path) -> str:
    """The key id signatures made with this private key carry."""
    return key_id(_raw(_private_key(private_key)))


def sign_artifact(artifact_dir: Path, private_key: Path) -> tuple[str, str]:
    """Sign an artifact folder in place (signature.json, replacing an earlier one), after the
    runtime's every check (digest, files, the module against its manifest): only what a robot
    would load is signed. Returns (key id, digest)."""
    folder = Path(artifact_dir)
    key = _private_key(private_key)
    if (folder / SIGNATURE_FILE).is_file():
        os.unlink(folder / SIGNATURE_FILE)  # replaced: the check below must not judge the old one
    digest = load(folder, threads=None).digest
    raw = _raw(key)
    signature = {"algorithm": SIGNATURE_ALGORITHM, "digest": digest, "key_id": key_id(raw), "public_key": raw.hex(),
                 "signature": key.sign(signed_message(digest)).hex()}
    atomic_write_text(folder / SIGNATURE_FILE, json.dumps(signature, indent=2) + "\n")
    return key_id(raw), digest
