"""One training update of a Trainer's model, outside the Trainer's loop (for timing)."""

from __future__ import annotations

from typing import Callable

from torch.utils.flop_counter import FlopCounterMode

from safecritic.controller.training import Trainer
from safecritic.controller.update import pretrain_update
from safecritic.critics.cpu import use_bf16


def make_step(trainer: Trainer, with_detector: bool = False) -> Callable[[], object]:
    """The critic-phase update exactly as Trainer runs it (`trainer.update_step()`: a batch, then
    controller/update.py's Update), + optionally one OOD-detector step, which in a run trains in
    the pretraining phase before the critics. Anything with an `update_step()` will do without
    the detector (bench/plain_cql.py's PlainCQL)."""
    update = trainer.update_step()
    if not with_detector:
        return update
    cfg, m, g = trainer.config, trainer.model, trainer.generator
    bf16 = use_bf16(cfg.run.precision)

    def step() -> None:
        update()
        m.detector.requires_grad_(True)  # the Update froze it, as training does after pretraining
        pretrain_update(m, None, None, trainer.tensors.sample(cfg.critics.batch_size, g), trainer.optimizers, g, bf16)
        m.detector.requires_grad_(False)

    return step


def gflop_of(step: Callable[[], object]) -> float:
    """GFLOP of one call of `step` (forward and backward matmuls, counted by torch, not estimated).
    The call is a real update: the step's model moves on by one."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9
