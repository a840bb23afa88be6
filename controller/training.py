"""The offline training loop: prior and OOD detector first, then critics and actor.

Resumable: a checkpoint holds the model, the optimisers, the random generator, the
phase and step, and how many metrics lines were written, so a run killed at any
point and resumed ends bit-identical to one that never stopped. Checkpoints are
written atomically; a non-finite loss stops the run and leaves the last good one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch

from safecritic.configs.errors import RunError, SafecriticError
from safecritic.configs.fileio import atomic_torch_save, atomic_write_text
from safecritic.configs.loader import dump_config
from safecritic.configs.schema import Config
from safecritic.controller.model import ModelSpec, SafeCriticModel
from safecritic.controller.updates import (
    ActorTerms,
    ActorUpdate,
    Batch,
    TrainTensors,
    actor_step,
    blurred_batch,
    critic_step,
    detector_loss_config,
    detector_step,
    polyak,
    prior_step,
    update_duals,
)
from safecritic.critics.conformal import conformal_threshold
from safecritic.critics.cpu import tune_cpu, use_bf16
from safecritic.critics.diagnostics import accident_auroc, steps_before_accident
from safecritic.critics.csc import cost_q_max
from safecritic.envs.dataset import NormStats, OfflineData, discounted_returns, n_step_backups, successful_episode_rows

CHECKPOINT_FORMAT = 1
REFERENCE_SEED_OFFSET = 1  # pi_ref's batch generator: run.seed + this (any fixed offset: a stream apart from the main one)
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


def adam(params: Iterable[torch.Tensor], lr: float, fused: bool = True) -> torch.optim.Adam:
    """Adam with torch's fused CPU kernel: one op per step instead of ~10 per parameter
    tensor. Our networks are small and their updates bound by per-op overhead, not FLOPs:
    +7-9% critic-phase updates/s on the default config (bench/optimizer_ab.py, which also
    builds the for-loop variant with fused=False)."""
    return torch.optim.Adam(params, lr=lr, fused=fused)


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
        stats = NormStats.of(model.featurize(data.train.obs))  # train split only, featurized
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
    q_cost = model.critic.cost_value(logits).max(dim=0).values
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
    q25, q75 = torch.quantile(scores, torch.tensor([0.25, 0.75])).tolist()
    model.ood_tau.fill_(tau)
    model.ood_spread.fill_(max(q75 - q25, 1e-3))
    return {"ood_tau": tau, "ood_calib_n": int(scores.numel()), "ood_alpha": alpha, "ood_spread": float(model.ood_spread),
            "ood_prior_scale": scale}


@dataclass
class Trainer:
    """Trains one run in `run_dir`. `on_step(phase, step)` is a test hook (e.g. to simulate a kill)."""

    config: Config
    data: OfflineData
    run_dir: Path
    progress: Progress = field(default_factory=NoProgress)
    on_step: Callable[[str, int], None] | None = None

    def __post_init__(self) -> None:
        self.paths = RunPaths(Path(self.run_dir))
        tune_cpu(self.config.run.threads)
        torch.manual_seed(self.config.run.seed)
        self.spec = model_spec(self.config, self.data)
        self.model = SafeCriticModel(self.config, self.spec)
        _prepare_model(self.model, self.data)
        horizon = self.config.critics.accident.oversample_horizon
        rare = torch.nonzero(steps_before_accident(self.data.train, horizon, require_terminal=False)).flatten()
        c, p = self.config.critics, self.config.policy
        self.tensors = TrainTensors(
            self.model, self.data.train.obs, self.data.train.act, self.data.train.rew,
            self.data.train.cost, self.data.train.next_obs, self.data.train.terminal, rare,
            discounted_returns(self.data.train, c.gamma) if c.task.mc_lower_bound else None,
            n_step_backups(self.data.train, c.task.n_step, c.gamma) if c.task.n_step > 1 else None,
        )
        m = self.model
        self.successful_rows = torch.zeros(0, dtype=torch.long)
        if m.reference_prior is not None:
            self.successful_rows = torch.nonzero(successful_episode_rows(self.data.train)).flatten()
            if not len(self.successful_rows):
                raise RunError(
                    "no training episode terminated without a cost, so there is nothing to fit the gate's reference "
                    "prior pi_ref to: set -o policy.prior.fit_successful=false -o gate.reference=behaviour, or collect "
                    "data with successful episodes"
                )
            m.spec.check_observation_entries("policy.prior.reference_noise_entries", p.prior.reference_noise_entries,
                                             "name the raw entries that hold the robot's own velocity (PointNav: [2, 3]), or null")
        self.optimizers = {
            "prior": adam(m.prior.parameters(), p.prior.lr),
            "detector": adam(m.detector.parameters(), c.ood.lr),
            "critic": adam(m.critic.parameters(), c.lr),
            "actor": adam(m.actor.parameters(), p.lr),
            "temperature": adam([m.log_temperature], p.temperature_lr),
        }
        if m.reference_prior is not None:
            self.optimizers["reference_prior"] = adam(m.reference_prior.parameters(), p.prior.lr)
        if m.plain_actor is not None:
            self.optimizers["plain_actor"] = adam(m.plain_actor.parameters(), p.lr)
            self.optimizers["plain_temperature"] = adam([m.plain_log_temperature], p.temperature_lr)
        self.generator = torch.Generator().manual_seed(self.config.run.seed)
        # pi_ref's batches come from a generator of their own, so that fitting pi_ref leaves every
        # other network's training bit-identical to a run without it (policy.prior.fit_successful).
        self.reference_generator = torch.Generator().manual_seed(self.config.run.seed + REFERENCE_SEED_OFFSET)
        self.phase, self.step, self.metrics_lines = PHASES[0], 0, 0
        self.calibration: dict[str, float] = {}
        self.timings: dict[str, float] = {}

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
            "reference_generator": self.reference_generator.get_state(),
            "dataset_sha256": self.data.info.sha256,
            "calibration": self.calibration,
            "timings": self.timings,
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
        if "reference_generator" in state:  # checkpoints from before pi_ref have none (and no pi_ref to fit)
            self.reference_generator.set_state(state["reference_generator"])
        self.phase, self.step, self.metrics_lines = state["phase"], state["step"], state["metrics_lines"]
        self.calibration, self.timings = dict(state["calibration"]), dict(state["timings"])
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
        self.paths.root.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load()
        else:
            atomic_write_text(self.paths.config, dump_config(self.config))
            atomic_write_text(self.paths.metrics, "")
        if self.phase == "pretrain":
            self._pretrain()
        if self.phase == "critic":
            self._critic()
        return self.summary()

    def _loop(self, total: int, step_fn: Callable[[], dict[str, torch.Tensor]]) -> None:
        cfg = self.config.train
        self.progress.start(self.phase, total, self.step)
        start, start_step = time.perf_counter(), self.step
        sums: dict[tuple[str, ...], torch.Tensor] = {}  # per set of metric names (pretraining's changes once)
        count = 0
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
                sums, count = {}, 0
            if self.step % cfg.checkpoint_every == 0:
                self._store_timing(start, start_step)
                start, start_step = time.perf_counter(), self.step
                self.save()
            if self.on_step is not None:
                self.on_step(self.phase, self.step)
        self._store_timing(start, start_step)
        self.progress.close()

    def _store_timing(self, start: float, start_step: int) -> None:
        key = self.phase
        self.timings[f"{key}_seconds"] = self.timings.get(f"{key}_seconds", 0.0) + time.perf_counter() - start
        self.timings[f"{key}_steps"] = self.timings.get(f"{key}_steps", 0) + self.step - start_step

    def _reference_batch(self, n: int) -> Batch:
        """A batch of the successful episodes for pi_ref, with policy.prior.reference_noise_entries blurred."""
        p = self.config.policy.prior
        if not p.blurs_reference:
            return self.tensors.sample(n, self.reference_generator, rows=self.successful_rows)
        idx = self.tensors.draw(n, self.reference_generator, self.successful_rows)
        return blurred_batch(self.model, self.data.train.obs, self.tensors.act, idx, p.reference_noise_entries,
                             p.reference_noise_std, self.reference_generator)

    def _pretrain(self) -> None:
        p, o = self.config.policy.prior, self.config.critics.ood
        det_cfg = detector_loss_config(self.config)
        total = max(p.steps, o.steps)
        bf16 = use_bf16(self.config.run.precision)

        def step() -> dict[str, torch.Tensor]:
            out: dict[str, torch.Tensor] = {}
            if self.step < p.steps:
                out.update(prior_step(self.model.prior, self.tensors.sample(p.batch_size, self.generator), self.optimizers["prior"]))
                if self.model.reference_prior is not None:
                    batch = self._reference_batch(p.batch_size)
                    out.update(prior_step(self.model.reference_prior, batch, self.optimizers["reference_prior"], "reference_nll"))
            if self.step < o.steps:
                batch = self.tensors.sample(o.batch_size, self.generator)
                out.update(detector_step(self.model, batch, self.optimizers["detector"], det_cfg, self.generator, bf16))
            return out

        self._loop(total, step)
        self.calibration = calibrate_detector(self.model, self.data, self.config)
        self.phase, self.step = "critic", 0
        self.save()

    def update_step(self) -> Callable[[], dict[str, torch.Tensor]]:
        """One critic-phase update (critics, actor, duals, plain actor, targets) as a closure:
        the training loop calls it, and bench/ times exactly the same function."""
        cfg = self.config
        target_entropy = cfg.policy.target_entropy if cfg.policy.target_entropy is not None else -float(self.spec.act_dim)
        curriculum = cfg.critics.task.curriculum == "ood_weighted"
        self.model.prior.requires_grad_(False)
        if self.model.reference_prior is not None:
            self.model.reference_prior.requires_grad_(False)
        self.tensors.cache_prior(self.model.prior, use_bf16(cfg.run.precision), kl_prior=self.model.kl_prior)
        self.model.detector.requires_grad_(False)
        o, m, g = self.optimizers, self.model, self.generator
        constrained = cfg.policy.constraints.enabled

        rare_fraction = cfg.critics.accident.oversample if m.critic.has_cost else 0.0
        bf16 = use_bf16(cfg.run.precision)

        def step() -> dict[str, torch.Tensor]:
            batch = self.tensors.sample(cfg.critics.batch_size, g, rare_fraction)
            out = critic_step(m, batch, o["critic"], cfg, g, curriculum)
            terms = ActorTerms(
                cost_weight=m.cost_multiplier.get() if constrained and m.critic.has_cost else None,
                kl_weight=m.kl_multiplier.get() if constrained else None,
            )
            actors = [ActorUpdate(m.actor, m.log_temperature, o["actor"], o["temperature"], terms)]
            if m.plain_actor is not None:
                actors.append(ActorUpdate(m.plain_actor, m.plain_log_temperature, o["plain_actor"],
                                          o["plain_temperature"], ActorTerms(), prefix="plain"))
            out.update(actor_step(m, actors, batch, g, target_entropy, bf16=bf16))
            if constrained:
                out.update(update_duals(m, cfg, out))
            polyak(m, cfg.critics.tau)
            return out

        return step

    def _critic(self) -> None:
        cfg = self.config
        step = self.update_step()
        self._loop(cfg.train.steps, step)
        if self.model.critic.has_cost:
            self.calibration.update(accident_ranking(self.model, self.data.calib, cfg.critics.accident.oversample_horizon))
        self.phase = "done"
        self.save()
        atomic_write_text(self.paths.summary, json.dumps(self.summary(), indent=2))

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
