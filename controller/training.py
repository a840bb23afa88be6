"""The offline training loop: prior and OOD detector first, then critics and actor.

Resumable: a checkpoint holds the model, the optimisers, the random generator, the
phase and step, how many metrics lines were written and the learner's own state (a
model-based learner's imagined buffer), so a run killed at any
point and resumed ends bit-identical to one that never stopped. Checkpoints are
written atomically; a non-finite loss stops the run and leaves the last good one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from safecritic.configs.crashpoint import crash_point
from safecritic.configs.errors import RunError, SafecriticError
from safecritic.configs.fileio import atomic_torch_save, atomic_write_text
from safecritic.configs.loader import dump_config
from safecritic.configs.lock import ensure_folder, run_lock
from safecritic.configs.schema import Config
from safecritic.controller.model import ModelSpec, SafeCriticModel
from safecritic.controller.policies import MixturePolicy
from safecritic.controller.learners import learner_class
from safecritic.controller.update import TrainTensors, Update, adam, pretrain_update
from safecritic.critics.conformal import conformal_threshold
from safecritic.critics.cpu import tune_cpu, use_bf16
from safecritic.critics.diagnostics import accident_auroc, steps_before_accident
from safecritic.critics.csc import cost_q_max
from safecritic.critics.q_ensemble import POLICY_RISK
from safecritic.envs.dataset import NormStats, OfflineData, successful_episode_rows

CHECKPOINT_FORMAT = 2  # 2: the mixture actor, two accident heads, the state-wise multiplier
PHASES = ("pretrain", "critic", "done")


class TrainingDiverged(SafecriticError):
    """A loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 1


class Progress(Protocol):
    def start(self, phase: str, total: int, done: int) -> None: ...
    def update(self, n: int, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, phase: str, total: int, done: int) -> None: ...
    def update(self, n: int, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def summary(self) -> Path:
        return self.root / "train_summary.json"


def model_spec(config: Config, data: OfflineData) -> ModelSpec:
    costs_terminate = bool(torch.all(data.train.terminal[data.train.cost > 0] > 0)) if (data.train.cost > 0).any() else True
    return ModelSpec(
        obs_dim=data.train.obs_dim,
        act_dim=data.train.act_dim,
        cost_q_max=cost_q_max(config.critics.accident.gamma, costs_terminate),
        act_low=tuple(data.info.act_low),
        act_high=tuple(data.info.act_high),
    )


def _prepare_model(model: SafeCriticModel, data: OfflineData) -> None:
    """Data-dependent buffers: normalisation statistics and the detector's state box."""
    with torch.no_grad():
        stats = NormStats.of(model.features(data.train.obs))  # train split only, featurised
        model.obs_norm.mean.copy_(stats.mean)
        model.obs_norm.std.copy_(stats.std)
        obs_n = model.normalize_obs(data.train.obs)
        model.detector.obs_low.copy_(obs_n.min(0).values)
        model.detector.obs_high.copy_(obs_n.max(0).values)


def calibration_pairs(model: SafeCriticModel, data: OfflineData, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every `stride`-th calibration transition (thinned against autocorrelation), normalised."""
    idx = torch.arange(0, len(data.calib), stride)
    with torch.no_grad():
        return model.normalize_obs(data.calib.obs[idx]), model.to_unit_action(data.calib.act[idx])


@torch.no_grad()
def accident_ranking(model: SafeCriticModel, transitions, horizon: int) -> dict[str, float]:
    """How well Q_C(s, a_data) on held-out episodes ranks the steps an accident follows
    within `horizon` steps above the rest (AUROC; issue 3's check of the accident critic)."""
    x = model.normalize_obs(transitions.obs)
    _, logits = model.critic(x, model.to_unit_action(transitions.act))
    q_cost = model.critic.cost_value(logits[..., POLICY_RISK]).max(dim=0).values
    return accident_auroc(q_cost, transitions, horizon)


def training_pairs(model: SafeCriticModel, data: OfflineData, n: int = 20000) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random sample of n training transitions (seed 0), normalised: for statistics
    fitted on training data (the OOD score's scale, the Mahalanobis baseline)."""
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n]
    with torch.no_grad():
        return model.normalize_obs(data.train.obs[idx]), model.to_unit_action(data.train.act[idx])


def fit_ood_prior_scale(model: SafeCriticModel, data: OfflineData, weight: float, pairs: int = 20000) -> float:
    """c = w * std(-f) / std(-log pi_beta) on *training* pairs: the two terms on one scale.

    Fitted on training data, not the calibration episodes, so that the score is fixed
    before the split-conformal threshold sees them (exchangeability, REFERENCES: conformal).
    """
    if weight <= 0.0:
        return 0.0
    obs, act = training_pairs(model, data, pairs)
    with torch.no_grad():
        contrastive = model.detector.score(obs, act)
        prior_nll = -model.prior.log_prob(obs, act)
    return weight * float(contrastive.std()) / max(float(prior_nll.std()), 1e-6)


def calibrate_detector(model: SafeCriticModel, data: OfflineData, config: Config) -> dict[str, float]:
    """The OOD score's prior weight, then its split-conformal threshold tau on held-out calibration episodes."""
    scale = fit_ood_prior_scale(model, data, config.critics.ood.prior_weight)
    model.ood_prior_scale.fill_(scale)
    obs, act = calibration_pairs(model, data, config.critics.ood.calib_stride)
    with torch.no_grad():
        scores = model.ood_score(obs, act)
    alpha = config.critics.ood.false_alarm_rate
    tau = conformal_threshold(scores, alpha)
    model.ood_tau.fill_(tau)
    return {"ood_tau": tau, "ood_calib_n": int(scores.numel()), "ood_alpha": alpha, "ood_prior_scale": scale}


@dataclass
class Trainer:
    """Trains one run in `run_dir`. `on_step(phase, step)` is a test hook (e.g. to simulate a kill)."""

    config: Config
    data: OfflineData
    run_dir: Path
    progress: Progress = field(default_factory=NoProgress)
    on_step: Callable[[str, int], None] | None = None
    # The critic-phase update: policy.learner's (controller/learners/), unless given;
    # bench/constraints.py passes the alternatives it measures against the default.
    update_class: type[Update] | None = None

    def __post_init__(self) -> None:
        self.paths = RunPaths(Path(self.run_dir))
        tune_cpu(self.config.run.threads)
        torch.manual_seed(self.config.run.seed)
        if self.update_class is None:
            self.update_class = learner_class(self.config.policy.learner)
        self.update_class.options(self.config)  # a misspelt learner option stops here, before any work
        self.spec = model_spec(self.config, self.data)
        self.model = SafeCriticModel(self.config, self.spec, learner=self.update_class)
        _prepare_model(self.model, self.data)
        c, p, train = self.config.critics, self.config.policy, self.data.train
        rare = torch.nonzero(steps_before_accident(train, c.accident.oversample_horizon, require_terminal=False)).flatten()
        self.tensors = TrainTensors(self.model, train.obs, train.act, train.rew, train.cost, train.next_obs,
                                    train.terminal, rare)
        self.successful_rows = torch.nonzero(successful_episode_rows(
            train, self.data.info.has_success, self.config.data.successful_quantile,
            self.config.data.successful_max_cost)).flatten()
        # OSRL's "safe" episodes: within the cost budget, whatever their return (BC-Safe learns from them).
        self.safe_rows = torch.nonzero(successful_episode_rows(train, False, 0.0, self.config.data.successful_max_cost)).flatten()
        if not len(self.successful_rows):
            raise RunError(
                f"no training episode has a summed cost of at most data.successful_max_cost = "
                f"{self.config.data.successful_max_cost:g}, so there is nothing to fit pi_ref (the successful episodes' "
                "behaviour) to: collect data that holds such episodes, or, for a task judged against an episode cost "
                "budget, set data.successful_max_cost to that budget"
            )
        m = self.model
        self.optimizers = {
            "prior": adam(m.prior.parameters(), p.prior_lr),
            "reference": adam(m.reference.parameters(), p.prior_lr),
            "detector": adam(m.detector.parameters(), c.lr),
            "critic": adam(m.critic.parameters(), c.lr),
            **self.update_class.optimizers(m, self.config),
        }
        self.generator = torch.Generator().manual_seed(self.config.run.seed)
        self.phase, self.step, self.metrics_lines = PHASES[0], 0, 0
        self.calibration: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        self.pending_sums: dict[tuple[str, ...], torch.Tensor] = {}
        self.pending_count = 0
        self.update: Update | None = None  # the critic phase's, while it runs
        self.learner_state: dict[str, Any] = {}  # a resumed checkpoint's, handed to that update when it starts

    # ----- checkpoints -------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "phase": self.phase,
            "step": self.step,
            "metrics_lines": self.metrics_lines,
            "spec": self.spec.to_dict(),
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "dataset_sha256": self.data.info.sha256,
            "calibration": self.calibration,
            "timings": self.timings,
            "pending_metrics": [[list(names), vector] for names, vector in self.pending_sums.items()],
            "pending_count": self.pending_count,
            "learner": {} if self.update is None else self.update.state_dict(),
        }

    def save(self) -> None:
        atomic_torch_save(self.paths.checkpoint, self._checkpoint())

    def load(self) -> None:
        state = load_checkpoint(self.paths.checkpoint)
        if state["dataset_sha256"] != self.data.info.sha256:
            raise RunError(
                f"{self.paths.checkpoint} was trained on different data (dataset hash differs); "
                "resume with the same dataset, or start a new run"
            )
        self.model.load_state_dict(state["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.generator.set_state(state["generator"])
        self.phase, self.step, self.metrics_lines = state["phase"], state["step"], state["metrics_lines"]
        self.calibration, self.timings = dict(state["calibration"]), dict(state["timings"])
        self.pending_sums = {tuple(names): vector for names, vector in state.get("pending_metrics", [])}
        self.pending_count = int(state.get("pending_count", 0))
        self.learner_state = dict(state.get("learner", {}))
        # Forget metrics written after this checkpoint: they will be written again.
        if self.paths.metrics.exists():
            lines = self.paths.metrics.read_text().splitlines(keepends=True)[: self.metrics_lines]
            atomic_write_text(self.paths.metrics, "".join(lines))

    # ----- metrics -----------------------------------------------------------------
    def _log(self, metrics: dict[str, float]) -> None:
        line = json.dumps({"phase": self.phase, "step": self.step, **metrics})
        with open(self.paths.metrics, "a") as handle:
            handle.write(line + "\n")
        self.metrics_lines += 1

    def _check_finite(self, metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's metrics (detached scalars) as one vector, after checking that all are
        finite: a few ops for the ~23 metrics of an update instead of ~3 per metric and one
        add per metric for the running sums (0.29 -> ~0.03 ms per update)."""
        values = torch.stack(list(metrics.values()))
        if bool(torch.isfinite(values).all()):
            return values
        bad = {k: float(v) for k, v in metrics.items() if not torch.isfinite(v).all()}
        raise TrainingDiverged(
            f"training diverged in phase {self.phase!r} at step {self.step}: non-finite "
            f"{', '.join(f'{k}={v}' for k, v in bad.items())}. The last good checkpoint is kept at "
            f"{self.paths.checkpoint}. Lower the learning rates (critics.lr, policy.lr) or the "
            "conservative weights, then start a new run (or --resume to retry from the checkpoint)."
        )

    # ----- the loop ----------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        with run_lock(self.paths.root):  # re-entrant: pipeline.train holds it already
            ensure_folder(self.paths.root, "run folder")
            if resume:
                self.load()
            else:
                atomic_write_text(self.paths.config, dump_config(self.config))
                atomic_write_text(self.paths.metrics, "")
            if self.phase == "pretrain":
                self._pretrain()
            if self.phase == "critic":
                self._critic()
            summary = self.summary()
            # Also on a resume of a finished run: a kill between the last checkpoint and this file loses nothing.
            atomic_write_text(self.paths.summary, json.dumps(summary, indent=2))
            return summary

    def _loop(self, total: int, step_fn: Callable[[], dict[str, torch.Tensor]]) -> None:
        cfg = self.config.train
        self.progress.start(self.phase, total, self.step)
        start, start_step = time.perf_counter(), self.step
        # The metric sums since the last log line (per set of metric names: pretraining's changes once)
        # live on self, so a checkpoint between log lines carries them and a resumed run logs the same means.
        sums, count = self.pending_sums, self.pending_count
        while self.step < total:
            metrics = step_fn()
            values = self._check_finite(metrics)
            self.step += 1
            count += 1
            names = tuple(metrics)
            sums[names] = sums[names] + values if names in sums else values
            if self.step % cfg.log_every == 0 or self.step == total:
                totals: dict[str, float] = {}
                for group, vector in sums.items():
                    for k, v in zip(group, vector.tolist()):
                        totals[k] = totals.get(k, 0.0) + v
                means = {k: round(v / count, 6) for k, v in totals.items()}
                elapsed = time.perf_counter() - start
                means["updates_per_s"] = round((self.step - start_step) / max(elapsed, 1e-9), 2)
                self._log(means)
                self.progress.update(count, means)
                sums.clear()
                count = 0
            if self.step % cfg.checkpoint_every == 0:
                self._store_timing(start, start_step)
                start, start_step = time.perf_counter(), self.step
                self.pending_count = count
                self.save()
            if self.on_step is not None:
                self.on_step(self.phase, self.step)
            crash_point("train", self.phase, self.step)
        self._store_timing(start, start_step)
        self.pending_count = 0  # the last step always logs
        self.progress.close()

    def _store_timing(self, start: float, start_step: int) -> None:
        key = self.phase
        self.timings[f"{key}_seconds"] = self.timings.get(f"{key}_seconds", 0.0) + time.perf_counter() - start
        self.timings[f"{key}_steps"] = self.timings.get(f"{key}_steps", 0) + self.step - start_step

    def _pretrain(self) -> None:
        p, o, batch_size = self.config.policy, self.config.critics.ood, self.config.critics.batch_size
        bf16 = use_bf16(self.config.run.precision)
        t, g = self.tensors, self.generator

        def step() -> dict[str, torch.Tensor]:
            fit_priors = self.step < p.prior_steps
            return pretrain_update(
                self.model,
                t.sample(batch_size, g) if fit_priors else None,
                t.sample(batch_size, g, rows=self.successful_rows) if fit_priors else None,
                t.sample(batch_size, g) if self.step < o.steps else None,
                self.optimizers, g, bf16)

        self._loop(max(p.prior_steps, o.steps), step)
        self.calibration = calibrate_detector(self.model, self.data, self.config)
        self.update_class.start(self.model)
        self.phase, self.step = "critic", 0
        self.save()

    def update_step(self) -> Callable[[], dict[str, torch.Tensor]]:
        """One critic-phase update (controller/update.py) on a fresh batch, as a closure: the
        training loop calls it, and bench/ times exactly the same function."""
        self.tensors.cache_priors(self.model)
        update = self.update_class(self.model, self.config, self.optimizers, self.generator, data=self.tensors)
        update.load_state_dict(self.learner_state)
        self.update = update
        c = self.config.critics
        actor_rows = {"successful": self.successful_rows, "safe": self.safe_rows, "all": None}[update.actor_rows]

        def step() -> dict[str, torch.Tensor]:
            return update(self.tensors.sample(c.batch_size, self.generator, c.accident.oversample),
                          self.tensors.sample(c.batch_size, self.generator, rows=actor_rows))

        return step

    def _critic(self) -> None:
        cfg = self.config
        self._loop(cfg.train.steps, self.update_step())
        self.calibration.update(accident_ranking(self.model, self.data.calib, cfg.critics.accident.oversample_horizon))
        self.calibration["constraint"] = constraint_report(self.model, self.data.calib, cfg)
        self.phase = "done"
        self.update = None  # a finished run's checkpoint needs no imagined buffer
        self.save()

    def summary(self) -> dict[str, Any]:
        t = self.timings
        rate = t.get("critic_steps", 0) / t["critic_seconds"] if t.get("critic_seconds") else None
        return {
            "run_dir": str(self.paths.root),
            "phase": self.phase,
            "dataset_id": self.data.info.dataset_id,
            "dataset_sha256": self.data.info.sha256,
            "train_transitions": len(self.data.train),
            "calib_transitions": len(self.data.calib),
            "test_transitions": len(self.data.test),
            "calibration": self.calibration,
            "timings": t,
            "critic_updates_per_s": rate,
        }


@torch.no_grad()
def constraint_report(model: SafeCriticModel, transitions, config: Config, rows: int = 4096) -> dict[str, float]:
    """The accident constraint on held-out states at the end of training: where it binds, its
    multiplier there, the actor's violations where it is feasible, and the measured KL(pi || pi_beta)."""
    idx = torch.linspace(0, len(transitions) - 1, min(rows, len(transitions))).long()
    part = transitions.select(idx)
    tensors = TrainTensors(model, part.obs, part.act, part.rew, part.cost, part.next_obs, part.terminal)
    tensors.cache_priors(model)
    batch = tensors.sample(len(idx), torch.Generator().manual_seed(0))
    update = learner_class(config.policy.learner)(model, config, {}, torch.Generator().manual_seed(0))
    q_r, q_c, w, in_support = update.constraint_at(batch)
    stats = {k: float(v) for k, v in update.multipliers(q_r, q_c, w, in_support).items()}
    _, logits = model.critic(batch.obs, model.actor.mode(batch.obs))
    q_mode = model.critic.cost_value(logits[..., POLICY_RISK].max(dim=0).values)
    feasible = w.feasible
    stats["violation_where_feasible"] = float((q_mode[feasible] > config.policy.cost_limit).float().mean()) if feasible.any() else 0.0
    stats["kl_to_prior"] = kl_to_prior(model, batch.obs)
    return stats


def kl_to_prior(model: SafeCriticModel, obs: torch.Tensor, samples: int = 16) -> float:
    """KL(pi || pi_beta) in nats, estimated by samples of the actor (measured, not assumed)."""
    params = model.actor.params(obs)
    act, logp = MixturePolicy.sample(params, samples, torch.Generator().manual_seed(0))
    return float((logp - model.prior.log_prob(obs, act)).mean())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint, refusing a missing, truncated or foreign file with a clear message."""
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}; train first (safecritic train -c CONFIG)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"checkpoint {path} is unreadable (truncated or corrupt?): {exc.__class__.__name__}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a safecritic checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def load_trained(run_dir: Path, require_done: bool = True) -> tuple[Config, SafeCriticModel, dict[str, Any]]:
    """(config, model in eval mode, checkpoint) of a run directory, with clear refusals."""
    from safecritic.configs.loader import load_config

    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise RunError(f"no run in {run_dir} (no config.yaml); train one with: safecritic train -c CONFIG --run-dir {run_dir}")
    config = load_config(paths.config)
    state = load_checkpoint(paths.checkpoint)
    if require_done and state["phase"] != "done":
        raise RunError(
            f"the run in {run_dir} has not finished training (phase {state['phase']!r}, step {state['step']}); "
            f"finish it with: safecritic train --resume --run-dir {run_dir} -c {paths.config}"
        )
    model = SafeCriticModel(config, ModelSpec.from_dict(state["spec"]))
    model.load_state_dict(state["model"])
    model.eval()
    return config, model, state
