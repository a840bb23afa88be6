"""The artifact's file names and format version (standard library only: the runtime reads it)."""

FORMAT_VERSION = 1
CONTROLLER_FILE = "controller.pt"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "controller.onnx"  # optional: for stacks without torch (deploy/onnx_export.py)
