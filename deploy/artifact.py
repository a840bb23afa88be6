"""The artifact's file names and format version (standard library only).

deploy/runtime.py holds its own copy (it stands alone on a robot); tests/test_release.py
checks that the two agree.

Format 2: manifest.json lists the SHA-256 of every payload file under "files"; `digest`
holds the SHA-256 of the manifest's canonical JSON (one digest over module and manifest);
signature.json, when present, an Ed25519 signature of that digest; the TorchScript module
carries the facts the manifest states about it (FACTS_ATTRIBUTE, checked at load).
"""

FORMAT_VERSION = 2
CONTROLLER_FILE = "controller.pt"
MANIFEST_FILE = "manifest.json"
DIGEST_FILE = "digest"
SIGNATURE_FILE = "signature.json"
FACTS_ATTRIBUTE = "artifact_facts"
ONNX_FILE = "controller.onnx"  # optional: for stacks without torch (deploy/onnx_export.py)
