"""One training update of a Trainer's model, outside the Trainer's loop (for timing)."""

from __future__ import annotations

from typing import Callable

from safecritic.controller.training import Trainer
from safecritic.critics.cpu import use_bf16
from safecritic.controller.updates import (
    ActorTerms, actor_step, critic_step, detector_loss_config, detector_step, polyak, update_duals,
)


def make_step(trainer: Trainer, with_detector: bool = False) -> Callable[[], None]:
    """The critic-phase update as Trainer._critic runs it (+ optionally one detector step)."""
    cfg, m, o, g = trainer.config, trainer.model, trainer.optimizers, trainer.generator
    det_cfg = detector_loss_config(cfg)
    constrained = cfg.policy.constraints.enabled
    target_entropy = cfg.policy.target_entropy if cfg.policy.target_entropy is not None else -float(trainer.spec.act_dim)
    m.prior.requires_grad_(False)
    bf16 = use_bf16(cfg.run.precision)

    def step() -> None:
        rare = cfg.critics.accident.oversample if m.critic.has_cost else 0.0
        batch = trainer.tensors.sample(cfg.critics.batch_size, g, rare)
        out = critic_step(m, batch, o["critic"], cfg, g, cfg.critics.task.curriculum == "ood_weighted")
        terms = ActorTerms(m.cost_multiplier.get() if constrained and m.critic.has_cost else None,
                           m.kl_multiplier.get() if constrained else None)
        out.update(actor_step(m, m.actor, m.log_temperature, batch, o["actor"], o["temperature"], g,
                              target_entropy, terms, bf16=bf16))
        if constrained:
            update_duals(m, cfg, out)
        if m.plain_actor is not None:
            actor_step(m, m.plain_actor, m.plain_log_temperature, batch, o["plain_actor"], o["plain_temperature"],
                       g, target_entropy, ActorTerms(), prefix="plain", bf16=bf16)
        polyak(m, cfg.critics.tau)
        if with_detector:
            detector_step(m, trainer.tensors.sample(cfg.critics.ood.batch_size, g), o["detector"], det_cfg, g)

    return step
