"""ONNX export of the controller, for robot stacks without torch (C++ with onnxruntime).

The module that is scripted for controller.pt (the whole gate: features, normalisation,
candidates, critics, detector, veto, fallback, fault path) is exported once more, by
torch.onnx's torch.export-based exporter, with a dynamic batch axis. One implementation of
the gate: the graph is a trace of the same forward(), not a second version of it. The
torch.export-based exporter, not the TorchScript-based one: that one is deprecated since torch
2.9 ("will be removed"); both kept the fault path (IsNaN/IsInf/Where) exactly, and on a
smoke-preset run gave 563 and 560 nodes, batch 1 in 110 and 130 µs median on onnxruntime (one
thread). Without the exporter's graph optimiser (see onnx_bytes): with it, 209 nodes and 97 µs,
but a norm's epsilon was dropped.

Before anything is written the ONNX file must agree with the TorchScript module in its actions
and decision codes to the export's parity tolerance (x max(1, |value|)) on the run's observations
and on all fuzzed ones (also huge and far out of distribution), and in its record to
RECORD_TOLERANCE on the run's observations and the fuzzed ones near the data, zeros and
non-finite: export_checked says why, export.parity compares.
onnx, onnxruntime and onnxscript are an optional extra (pip install 'safecritic[onnx]'), imported only here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import numpy as np
import torch

from safecritic.configs.errors import RunError

INPUT_NAME = "observation"
OUTPUT_NAMES = ("action", "record")
BATCH_AXIS = "batch"
EXPORT_EXAMPLE_ROWS = 7  # the trace's batch: > 1 (torch.export specialises sizes 0 and 1), unlike the other axes
FUZZ_ROWS = 512  # fuzzed observations added to the run's at export (bench/onnx_parity.py checks 10 000)
FUZZ_SEED = 0
FUZZ_KINDS = ("near data", "far out of distribution", "huge values", "exact zeros", "NaN", "+inf", "-inf",
              "mixed non-finite")
# Kinds whose Q-values and OOD scores are not judged, only the decisions (export_checked says why).
FUZZ_DECISIONS_ONLY = ("far out of distribution", "huge values")
ELEMENT_TYPES = {1: "float32", 7: "int64", 9: "bool", 11: "float64"}  # onnx.TensorProto codes that can appear here


def require_onnx() -> tuple[Any, Any]:
    """(onnx, onnxruntime), or a RunError that names the extra to install (onnxscript: the exporter's)."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise RunError(f"ONNX export needs onnx, onnxruntime and onnxscript ({exc.name} is missing): "
                       "pip install 'safecritic[onnx]', or export without --onnx") from None
    return onnx, onnxruntime


def onnx_bytes(controller: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The controller as an ONNX model, batch axis dynamic (`example`: a few real observations)."""
    require_onnx()
    rows = example[torch.arange(EXPORT_EXAMPLE_ROWS) % example.shape[0]].float()
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" and friends: not ours to act on
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's own deprecation notices
            # optimize=False: onnxscript 0.7.2's optimiser dropped the `+ 1e-12` under a norm's square root
            # (a zero vector then gave 0 / 0 = NaN features; fuzz kind "exact zeros" catches it).
            program = torch.onnx.export(controller.eval(), (rows,), dynamo=True, verbose=False, optimize=False,
                                        input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=({0: batch},))
    except Exception as exc:  # an op without an ONNX translation: say which controller and why
        raise RunError(f"ONNX export of {type(controller).__name__} failed: {exc.__class__.__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}; nothing written") from None
    finally:
        quiet.setLevel(level)
    return program.model_proto.SerializeToString()


class OnnxController:
    """An onnxruntime session with the torch controller's interface (tensor in, (action, record)
    out), so that export.parity compares it with the TorchScript module as it compares eager."""

    def __init__(self, blob: bytes, threads: int = 1) -> None:
        _, ort = require_onnx()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [B, obs_dim] -> action [B, act_dim], record [B, len(RECORD_FIELDS)]."""
        action, record = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: obs})
        return action, record

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, record = self.run(np.ascontiguousarray(obs.detach().numpy(), dtype=np.float32))
        return torch.from_numpy(action), torch.from_numpy(record)


def fuzzed_observations(obs: torch.Tensor, count: int, seed: int = FUZZ_SEED) -> torch.Tensor:
    """`count` observations around and far from `obs` (the data's rows), the kinds of FUZZ_KINDS in
    turn: Gaussian steps of 0.5 data std, 20 std away, entries of 1e4..3e38 in magnitude, entries
    exactly 0 (every other such row all 0: where a norm's epsilon matters), and rows with 1..all
    entries NaN, +inf, -inf or a mix. Fixed seed: the same rows every export."""
    g = torch.Generator().manual_seed(seed)
    obs = obs.float()
    n, d = obs.shape
    mean = obs.mean(0)
    std = obs.std(0).clamp_min(1e-3) if n > 1 else torch.ones(d)
    base = obs[torch.randint(0, n, (count,), generator=g)]
    kind = torch.arange(count) % len(FUZZ_KINDS)
    out = base + 0.5 * std * torch.randn(count, d, generator=g)  # near data
    far = mean + 20.0 * std * torch.randn(count, d, generator=g)
    out = torch.where((kind == 1).unsqueeze(1), far, out)
    huge = torch.sign(torch.randn(count, d, generator=g)) * 10.0 ** (4.0 + 34.5 * torch.rand(count, d, generator=g))
    picks = torch.rand(count, d, generator=g) < torch.rand(count, 1, generator=g)  # which entries go wild
    picks[torch.arange(count), torch.randint(0, d, (count,), generator=g)] = True  # at least one per row
    out = torch.where((kind == 2).unsqueeze(1) & picks, huge.clamp(-3e38, 3e38), out)
    all_zero = (torch.arange(count) // len(FUZZ_KINDS)) % 2 == 0
    out = torch.where((kind == 3).unsqueeze(1) & (picks | all_zero.unsqueeze(1)), torch.zeros(()), out)
    values = torch.tensor([float("nan"), float("inf"), float("-inf")])
    mixed = values[torch.randint(0, 3, (count, d), generator=g)]
    special = torch.where((kind == 7).unsqueeze(1), mixed, values[(kind - 4).clamp(0, 2)].unsqueeze(1).expand(count, d))
    return torch.where((kind >= 4).unsqueeze(1) & picks, special, out)


def fuzz_kind_of_rows(count: int) -> list[str]:
    """The kind of each of `count` rows of fuzzed_observations (they come in FUZZ_KINDS' order)."""
    return [FUZZ_KINDS[i % len(FUZZ_KINDS)] for i in range(count)]


def io_description(blob: bytes) -> dict[str, list[dict[str, Any]]]:
    """The graph's inputs and outputs as written: name, shape (a dynamic axis by its name), dtype."""
    onnx, _ = require_onnx()
    graph = onnx.load_from_string(blob).graph

    def describe(values) -> list[dict[str, Any]]:
        return [{"name": v.name, "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
                 "dtype": ELEMENT_TYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))}
                for v in values]

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def opset(blob: bytes) -> int:
    """The default-domain opset the file needs from the runtime."""
    onnx, _ = require_onnx()
    return next(o.version for o in onnx.load_from_string(blob).opset_import if o.domain in ("", "ai.onnx"))


# The record's Q-values and OOD scores are float32 sums that onnxruntime adds in another order than torch;
# where terms cancel to a small result (the proposal's OOD score with the prior's log-density, about 2)
# they parted by 1.14e-5 x max(1, |value|) on one held-out row of 2 048 of a shipped task on one host, 5.5e-6 to
# 8.9e-6 elsewhere (docs/deploy_onnx.md). What the robot acts on, the action and the code, is judged at the
# export's own tolerance; the record, which it only logs, at this one.
RECORD_TOLERANCE = 1e-4


class Decisions:
    """A controller's outputs reduced to what the robot acts on: the action and the record's code
    column, so that export.parity judges them alone. A fault's record is the constant NaN row on
    both sides once the codes agree; NaN elsewhere comes from overflowed arithmetic (an observation
    with entries of ~1e37 gave Q_C = NaN in torch and 0 in onnxruntime, the same action and code)."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, record = self.controller(obs)
        return action, record[:, :1]


def export_checked(controller: torch.nn.Module, scripted: torch.nn.Module, obs: torch.Tensor,
                   tolerance: float) -> tuple[bytes, dict[str, Any]]:
    """The ONNX file's bytes and its manifest entry, after parity with the TorchScript module; a
    RunError, and nothing to write, when it fails. Judged, each difference over max(1, |value|):

    - every record entry within RECORD_TOLERANCE x max(1, |value|), NaN positions equal: on the
      run's observations `obs` and on the fuzzed ones near the data, exactly 0 and non-finite;
    - actions and codes (Decisions) within `tolerance`: on those and on all FUZZ_ROWS fuzzed ones. The Q-values and OOD scores of
      the FUZZ_DECISIONS_ONLY kinds are recorded, not judged: there they are differences of terms
      of 1e3-1e37, and float32 kernels that sum in another order (onnxruntime's, torch's) part by
      more than 1e-5 of the result, or overflow differently (measured: bench/onnx_parity.py).

    Relative above 1, not absolute: the record's Q_R and OOD score reach 30-170 on the shipped
    tasks, where one float32 ulp is 4e-6-1.5e-5 (measured on 40 000 observations of a shipped task: 2.7e-5
    abs, 7.6e-6 relative at most; actions, codes and Q_C agree to < 2e-6 abs). The max abs diff on
    the run's observations is recorded too."""
    from safecritic.deploy.export import parity  # the same check as eager vs TorchScript

    _, ort = require_onnx()
    blob = onnx_bytes(controller, obs)
    session = OnnxController(blob)
    obs, fuzzed = obs.float(), fuzzed_observations(obs, FUZZ_ROWS)
    tame = torch.tensor([k not in FUZZ_DECISIONS_ONLY for k in fuzz_kind_of_rows(len(fuzzed))])
    judged = torch.cat([obs, fuzzed[tame]])
    worst = parity(scripted, session, judged, scale_floor=1.0)
    worst_decisions = parity(Decisions(scripted), Decisions(session), torch.cat([obs, fuzzed]), scale_floor=1.0)
    if not (worst <= RECORD_TOLERANCE and worst_decisions <= tolerance):
        raise RunError(f"ONNX parity check failed against the TorchScript module (x max(1, |value|)): the record "
                       f"{worst:.3g} (limit {RECORD_TOLERANCE:g}) on {len(judged)} observations (the run's and fuzzed "
                       f"ones near the data, 0 or non-finite), the actions and codes {worst_decisions:.3g} (limit "
                       f"{tolerance:g}) on those and all {len(fuzzed)} fuzzed ones; nothing written")
    entry = {"opset": opset(blob),
             "parity_rule": f"|onnx - torchscript| <= {tolerance:g} x max(1, |torchscript|) for actions and codes on "
                            f"the run's observations and all fuzzed ones ({', '.join(FUZZ_KINDS)}); <= "
                            f"{RECORD_TOLERANCE:g} x max(1, |torchscript|) for every record entry (NaN positions equal) "
                            "on the run's observations and the fuzzed ones near the data, 0 or non-finite",
             "parity_max_scaled_diff": worst, "parity_max_abs_diff": parity(scripted, session, obs),
             "parity_decisions_max_scaled_diff": worst_decisions,
             "parity_fuzzed_record_max_scaled_diff": parity(scripted, session, fuzzed, scale_floor=1.0),
             "parity_observations": {"run": len(obs), "fuzzed": len(fuzzed), "fuzzed_records_judged": int(tame.sum())},
             "exporter": f"torch.onnx.export(dynamo=True, optimize=False), torch {torch.__version__}",
             "checked_with": f"onnxruntime {ort.__version__}, CPUExecutionProvider, default graph optimisations",
             **io_description(blob)}
    return blob, entry
