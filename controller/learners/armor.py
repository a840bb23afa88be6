"""ARMOR (Bhardwaj et al. 2023, "Adversarial Model for Offline RL"): pessimism relative to a reference.

Not "how bad could pi be" (CQL, MOPO) but "how much worse than pi_ref could it be": the critic f and
the dynamics model M are one adversary that jointly minimises

    L(f, M) = E_D[f(s, pi(s)) - f(s, pi_ref(s))]                         pi's value relative to pi_ref
            + beta E_(s,a)[(f(s, a) - r_M - gamma f(s'_M, pi(s'_M)))^2]   f Bellman-consistent under M
            + lambda E_D[-log M(s', r | s, a)]                           M accurate on the data

while the actor maximises f(s, pi(s)) (SAC, a small entropy price). M's gradient flows through its
reparameterised draw of (s'_M, r_M) (critics/dynamics.py's `rsample`), so M trades its accuracy on
the data for predictions under which pi looks worse than pi_ref, the more so the larger beta is
against lambda. A policy that scores below pi_ref under every such model is one the data cannot
vouch for; pi_ref here is ours (BC on the successful episodes, frozen after pretraining). The
actor starts from pi_beta, as the other learners' do (from pi_ref the relative value starts at 0).

On MOPO's machinery (model_based.py): the ensemble's maximum-likelihood fit at the first update,
imagined branches from data states every refresh_every updates, real and imagined rows in each
batch, MOPO's critic step (plain TD on both kinds of rows, the default's CSC accident critics on
the real rows only) and its SAC actor. What differs: ARMOR's three terms join that critic step, and
the model keeps training through the updates with an optimiser of its own. The model lives on the
SafeCriticModel (`model.dynamics`; not on the actor, which the exports copy), so checkpoints carry
its weights and the optimisers its Adam state; MOPO's `state_dict` adds the imagined buffer and the
refresh count, so a resumed run ends bit-identical to one that never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from safecritic.configs.schema import Config
from safecritic.controller.learners import model_based
from safecritic.controller.learners.model_based import MOPO, concat
from safecritic.controller.policies import MixtureParams, MixturePolicy
from safecritic.controller.update import Batch, adam
from safecritic.critics.cql import bellman_loss, task_target
from safecritic.critics.dynamics import DynamicsEnsemble, fit_dynamics
from safecritic.envs.dataset import Transitions


@dataclass(frozen=True)
class Options(model_based.Options):
    penalty: float = 0.0  # no reward penalty on imagined rows: the adversary is ARMOR's pessimism
    beta: float = 1.0  # the Bellman consistency under M, against the relative value's weight of 1
    model_weight: float = 1.0  # lambda: the model's likelihood of the data, against the adversarial term
    model_lr: float = 1e-4  # Adam on the model during the updates
    model_width: float = 200  # the ensemble's three hidden layers

    def __post_init__(self) -> None:
        if self.combo_weight:
            from safecritic.configs.errors import ConfigError

            raise ConfigError("the 'armor' learner has no COMBO term: leave combo_weight at 0")


def hidden(options: Options) -> tuple[int, ...]:
    return (int(options.model_width),) * 3


class ARMOR(MOPO):
    """The update is MOPO's `__call__`: `refresh` (the model's start, the imagined buffer), then
    (1) `critic_step_mixed`, the adversary's step on L(f, M), (2) `actor_step`, MOPO's SAC on the
    real and imagined states, (3) `polyak`, the target critic."""

    name = "armor"
    Options = Options

    @classmethod
    def build_actor(cls, model, obs_dim: int, act_dim: int, config: Config) -> torch.nn.Module:
        """SAC's mixture policy; and, beside it on the model, the adversary's ensemble, its data
        statistics placeholders until the first update fits it."""
        o, a = model.spec.obs_dim, model.spec.act_dim
        stats = [(torch.zeros(d), torch.ones(d)) for d in (o, a, o)]  # of s, a and s' - s
        model.dynamics = DynamicsEnsemble(o, a, *stats, (0.0, 1.0), hidden=hidden(cls.options(config)))
        model.dynamics.register_buffer("fitted", torch.tensor(False))
        return super().build_actor(model, obs_dim, act_dim, config)

    @classmethod
    def optimizers(cls, model, config: Config) -> dict[str, torch.optim.Optimizer]:
        lr = cls.options(config).model_lr
        return {**super().optimizers(model, config), "dynamics": adam(model.dynamics.parameters(), lr)}

    def __init__(self, model, config: Config, optimizers, generator, data=None) -> None:
        super().__init__(model, config, optimizers, generator, data)
        self.dynamics = model.dynamics  # present, so MOPO's refresh does not fit (and freeze) one of its own

    @cached_property
    def real(self) -> Transitions:
        """The training split in env units, as the model sees it."""
        return self.real_transitions()

    # 0. the model's start and the imagined buffer ----------------------------------------
    def refresh(self) -> dict[str, torch.Tensor]:
        """Maximum likelihood once (a resumed run's checkpoint has it done), then MOPO's refresh."""
        out = {}
        if self.data is not None and not bool(self.dynamics.fitted):
            fresh = DynamicsEnsemble.for_data(self.real, hidden=hidden(self.settings))  # the data's statistics
            self.dynamics.load_state_dict({**fresh.state_dict(), "fitted": torch.tensor(True)})
            error = fit_dynamics(self.dynamics, self.real, int(self.settings.model_steps), seed=self.config.run.seed)
            out["model_skill"] = torch.tensor(error.skill)
        return {**out, **super().refresh()}

    # 1. the adversary: critic and model (2, the actor, and 3, polyak, are MOPO's) ------
    def critic_step_mixed(self, mixed: Batch, n_real: int, policy, targets) -> dict[str, torch.Tensor]:
        """MOPO's critic step, whose conservative term is ARMOR's (below), and the model's step on
        the same backward: L(f, M) moves both, each by its own optimiser."""
        self.opt["dynamics"].zero_grad(set_to_none=True)
        out = super().critic_step_mixed(mixed, n_real, policy, targets)
        self.opt["dynamics"].step()
        return out

    def conservative_term(self, real: Batch, imagined: Batch, policy, n_real: int, out: dict) -> torch.Tensor:
        """relative value + beta Bellman error under M + lambda M's NLL of the data."""
        o = self.settings
        relative = self.relative_value(real, policy.s.select(slice(0, n_real)))
        consistency = self.model_bellman(concat(real, imagined))
        nll = self.model_nll(real.obs.shape[0])
        out.update(relative_value=relative.detach() / self.model.critic.members, model_bellman=consistency.detach(),
                   model_nll=nll.detach())
        return relative + o.beta * consistency + o.model_weight * nll

    def relative_value(self, batch: Batch, pi: MixtureParams) -> torch.Tensor:
        """E_D[f(s, a ~ pi) - f(s, a ~ pi_ref)], summed over the members as bellman_loss is."""
        with torch.no_grad():
            acts = torch.cat([MixturePolicy.sample(p, 1, self.g)[0] for p in (pi, batch.reference)])
        q, _ = self.model.critic(batch.obs, acts)  # [E, 2, B]
        return (q[:, 0] - q[:, 1]).mean(-1).sum()

    def model_bellman(self, batch: Batch) -> torch.Tensor:
        """f's Bellman error at the rows' (s, a), (s', r) drawn from M: differentiable in f(s, a) and in
        M's draw (the target critic at s'_M passes M a gradient, its own weights are fixed)."""
        m = self.model
        next_raw, reward = self.dynamics.rsample(batch.raw_obs, m.from_unit_action(batch.act), self.g)
        next_obs = m.normalize_obs(next_raw)
        with torch.no_grad():
            next_act = MixturePolicy.sample(m.actor.params(next_obs), 1, self.g)[0][0]
        q_next, _ = m.critic_target(next_obs, next_act)
        q, _ = m.critic(batch.obs, batch.act)
        return bellman_loss(q, task_target(reward, batch.terminal, q_next, self.config.critics.gamma))

    def model_nll(self, n: int) -> torch.Tensor:
        """M's negative log-likelihood of n training rows per member (each member its own draw)."""
        e = self.dynamics.members
        rows = torch.randint(len(self.real), (e * n,), generator=self.g)
        return self.dynamics.loss(self.real.select(rows), torch.arange(e * n).view(e, n))
