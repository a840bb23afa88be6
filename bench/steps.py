"""One training update of a Trainer's model, outside the Trainer's loop (for timing)."""

from __future__ import annotations

from typing import Callable

from torch.utils.flop_counter import FlopCounterMode

from safecritic.controller.training import Trainer
from safecritic.controller.updates import detector_loss_config, detector_step
from safecritic.critics.cpu import use_bf16


def make_step(trainer: Trainer, with_detector: bool = False) -> Callable[[], None]:
    """The critic-phase update exactly as Trainer runs it (+ optionally one detector step,
    which in a run trains in its own phase before the critics)."""
    cfg, m, o, g = trainer.config, trainer.model, trainer.optimizers, trainer.generator
    update = trainer.update_step()
    det_cfg = detector_loss_config(cfg)

    def step() -> None:
        update()
        if with_detector:
            m.detector.requires_grad_(True)
            detector_step(m, trainer.tensors.sample(cfg.critics.ood.batch_size, g), o["detector"], det_cfg, g,
                          use_bf16(cfg.run.precision))
            m.detector.requires_grad_(False)

    return step


def gflop_of(step: Callable[[], object]) -> float:
    """GFLOP of one call of `step` (forward and backward matmuls, counted by torch, not estimated).
    The call is a real update: the step's model moves on by one."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9
