"""The model-based conservative learners: MOPO and COMBO, on one dynamics ensemble.

Both fit critics/dynamics.py's probabilistic ensemble (next state, reward, cost and end heads)
to the training split when their first update runs, report its held-out one-step skill, and
every `refresh_every` updates branch short rollouts from data states with the current actor
(critics/model_rollouts.py). A rollout stops where the model expects a cost or an end, so no
imagined transition continues past an accident; the accident critics learn from the real data
as the default's do (the same cost side for every learner). The actor is SAC's (maximise
min-over-members Q_R minus a fixed entropy price) on real and imagined states. The model, the
imagined buffer and the refresh count go into the run's checkpoint (`state_dict`), so a resume
continues with the buffer the killed run had.

- MOPO (Yu et al. 2020): the imagined rewards pay lambda times the ensemble's disagreement, and
  Q_R learns by plain TD on both.
- COMBO (Yu et al. 2021): no reward penalty; instead CQL's push-down acts at the imagined
  states (uniform and policy actions) and the push-up at the data's (s, a), so Q_R is
  conservative exactly where the model, not the data, supplied the state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from safecritic.configs.schema import Config
from safecritic.controller.policies import MixtureParams, MixturePolicy
from safecritic.controller.learners.base import OwnActor
from safecritic.controller.update import Batch, TrainTensors, _step, polyak
from safecritic.critics.cql import bellman_loss, sample_actions
from safecritic.critics.dynamics import DynamicsEnsemble, fit_dynamics
from safecritic.critics.model_rollouts import imagine
from safecritic.envs.dataset import Transitions


IMAGINED = ("obs", "act", "rew", "cost", "next_obs", "terminal")  # an imagined buffer's fields, TrainTensors' order


@dataclass(frozen=True)
class Options:
    penalty: float = 1.0  # MOPO's lambda on the disagreement (COMBO: 0)
    combo_weight: float = 0.0  # COMBO's beta on the push-down at imagined states (MOPO: 0)
    horizon: float = 5  # imagined steps per branch
    branches: float = 2000  # data states branched from at each refresh
    refresh_every: float = 500  # updates between refreshes of the imagined buffer
    real_fraction: float = 0.5  # of each critic batch from the data, the rest imagined
    model_steps: float = 2000  # the dynamics ensemble's training steps
    entropy: float = 0.05  # SAC's fixed temperature


@dataclass(frozen=True)
class ComboOptions(Options):
    penalty: float = 0.0
    combo_weight: float = 1.0


def concat(a: Batch, b: Batch) -> Batch:
    """Rows of a, then rows of b (every field, the cached priors too)."""
    def cat(x, y):
        if x is None or y is None:
            return None
        if isinstance(x, MixtureParams):
            return MixtureParams(*(torch.cat([p, q]) for p, q in zip(x, y)))
        return torch.cat([x, y])

    return Batch(**{f.name: cat(getattr(a, f.name), getattr(b, f.name)) for f in fields(Batch)})


def rows_of(batch: Batch, rows: torch.Tensor) -> Batch:
    return Batch(**{f.name: (None if (v := getattr(batch, f.name)) is None else
                             (v.select(rows) if isinstance(v, MixtureParams) else v[rows])) for f in fields(Batch)})


class MOPO(OwnActor):
    name = "mopo"
    Options = Options

    def __init__(self, model, config: Config, optimizers, generator, data: TrainTensors | None = None) -> None:
        super().__init__(model, config, optimizers, generator, data)
        self.dynamics: DynamicsEnsemble | None = None
        self.imagined: TrainTensors | None = None
        self.calls = 0

    def __call__(self, batch: Batch, actor_batch: Batch) -> dict[str, torch.Tensor]:
        out = self.refresh()
        mixed, n_real = self.mixed(batch)
        policy = self.policy_at(mixed)
        targets = self.targets(mixed, policy)
        out.update(self.critic_step_mixed(mixed, n_real, policy, targets))
        out.update(self.actor_step(mixed))
        polyak(self.model, self.config.critics.tau)
        self.calls += 1
        return out

    # 1. the model and its imagined buffer ----------------------------------------------
    def real_transitions(self) -> Transitions:
        d, m = self.data, self.model
        zeros = torch.zeros(len(d))
        return Transitions(obs=d.raw_obs, act=m.from_unit_action(d.act), rew=d.rew, cost=d.cost, next_obs=d.raw_next_obs,
                           terminal=d.terminal, success=zeros, timeout=zeros, episode=zeros.long(), behavior=zeros.long())

    def refresh(self) -> dict[str, torch.Tensor]:
        """Fit the dynamics once; every refresh_every updates, imagine a fresh buffer with the current actor."""
        o, out = self.settings, {}
        if self.data is None:
            raise ValueError(f"the {self.name} learner needs the training split (Update(..., data=TrainTensors))")
        if self.dynamics is None:
            real = self.real_transitions()
            self.dynamics = DynamicsEnsemble.for_data(real)
            error = fit_dynamics(self.dynamics, real, steps=int(o.model_steps), seed=self.config.run.seed)
            self.dynamics.requires_grad_(False)
            out["model_skill"] = torch.tensor(error.skill)
        if self.imagined is None or self.calls % int(o.refresh_every) == 0:
            m = self.model
            starts = self.data.raw_obs[torch.randint(len(self.data), (int(o.branches),), generator=self.g)]

            def act(raw: torch.Tensor) -> torch.Tensor:
                params = m.actor.params(m.normalize_obs(raw))
                return m.from_unit_action(MixturePolicy.sample(params, 1, self.g)[0][0])

            with torch.no_grad():
                t = imagine(self.dynamics, starts, act, int(o.horizon), o.penalty, self.g)
            self.use_imagined({k: getattr(t, k) for k in IMAGINED})
            out["imagined_rows"] = torch.tensor(float(len(self.imagined)))
            out["imagined_reward"] = t.rew.mean()
        return out

    def use_imagined(self, rows: dict[str, torch.Tensor]) -> None:
        """The imagined transitions (env units) as the buffer the critic batches draw from."""
        self.imagined_rows = rows
        with torch.no_grad():
            self.imagined = TrainTensors(self.model, *(rows[k] for k in IMAGINED))
            self.imagined.cache_priors(self.model)

    # 1b. the checkpoint's share: the model (unless it lives on the SafeCriticModel), the buffer, the count
    def state_dict(self) -> dict:
        if self.imagined is None:  # no update ran yet: a resume starts as a fresh run does
            return {}
        state = {"calls": self.calls, "imagined": self.imagined_rows}
        if self.dynamics is not getattr(self.model, "dynamics", None):
            state["dynamics"] = self.dynamics.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if "dynamics" in state:
            self.dynamics = DynamicsEnsemble.for_data(self.real_transitions())
            self.dynamics.load_state_dict(state["dynamics"])
            self.dynamics.requires_grad_(False)
        self.calls = int(state["calls"])
        self.use_imagined(state["imagined"])

    def mixed(self, batch: Batch) -> tuple[Batch, int]:
        """real_fraction of the batch's rows (at random: its rare rows come last), then imagined rows."""
        b = batch.obs.shape[0]
        n_real = int(round(self.settings.real_fraction * b))
        real = rows_of(batch, torch.randperm(b, generator=self.g)[:n_real])
        return concat(real, self.imagined.sample(b - n_real, self.g)), n_real

    # 2. the critics -------------------------------------------------------------------
    def critic_step_mixed(self, mixed: Batch, n_real: int, policy, targets) -> dict[str, torch.Tensor]:
        """Q_R: TD on real and imagined rows; Q_C: the default's CSC on the real rows only."""
        real = slice(0, n_real)
        real_batch = rows_of(mixed, torch.arange(n_real))
        real_policy = type(policy)(policy.s.select(real), policy.next.select(real), policy.mode_next[real])
        real_targets = type(targets)(targets.task[real], *(None if t is None else t[real] for t in targets[1:]))
        loss, out = self.critic_losses(real_batch, real_policy, real_targets)
        imagined = rows_of(mixed, torch.arange(n_real, mixed.obs.shape[0]))
        q_imagined, _ = self.model.critic(imagined.obs, imagined.act)
        bellman = bellman_loss(q_imagined, targets.task[n_real:])
        loss = loss + bellman + self.conservative_term(real_batch, imagined, policy, n_real, out)
        _step(self.opt["critic"], loss)
        out.update(imagined_q_loss=bellman.detach(), critic_loss=loss.detach())
        return out

    def conservative_term(self, real: Batch, imagined: Batch, policy, n_real: int, out: dict) -> torch.Tensor:
        """COMBO's gap: logsumexp over uniform and policy actions at the imagined states minus Q at
        the data's (s, a); MOPO's weight is 0 (its conservatism is the reward penalty)."""
        beta = self.settings.combo_weight
        if beta == 0.0:
            return torch.zeros(())
        m, n = self.model, self.config.critics.sampled_actions
        b, a_dim = imagined.obs.shape[0], imagined.act.shape[1]
        pi_s, pi_next = policy.s.select(slice(n_real, None)), policy.next.select(slice(n_real, None))
        with torch.no_grad():
            sampled = sample_actions(MixturePolicy.sample(pi_s, n, self.g), MixturePolicy.sample(pi_next, n, self.g),
                                     n, b, a_dim, self.g)
        q_model, _ = m.critic(imagined.obs, sampled.actions)  # [E, 3N, B]
        q_data, _ = m.critic(real.obs, real.act)  # [E, B_real]
        down = torch.logsumexp(q_model - sampled.log_density.unsqueeze(0), dim=1).mean(-1)
        gap = down - q_data.mean(-1)
        out["combo_gap"] = gap.mean().detach()
        return beta * gap.sum()

    # 3. the actor ---------------------------------------------------------------------
    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """SAC: max E[min_e Q_R(s, a) - entropy log pi(a|s)], a ~ pi(s) reparameterised."""
        m = self.model
        acts, logp = MixturePolicy.sample(m.actor.params(batch.obs), 1, self.g)
        q_task, _ = m.critic(batch.obs, acts)
        loss = (self.settings.entropy * logp - q_task.min(dim=0).values).mean()
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach(), "actor_log_prob": logp.mean().detach()}


class COMBO(MOPO):
    name = "combo"
    Options = ComboOptions
