"""Train Hopper's behaviour policies once, by online SAC, and save them as small TorchScript files.

HopperVelocity's dataset needs drivers that differ in what matters to its cost: a `fast`
runner that breaks the velocity limit, a `slow` one that keeps within it. Nothing scripted
hops, so they are learned once here and shipped (envs/hopper/policies/*.pt); tests and the
pipeline only load them.

    python -m safecritic.envs.hopper.train_behaviors --runner fast --steps 300000
    python -m safecritic.envs.hopper.train_behaviors --runner slow --steps 300000

Each run takes one thread (run the two side by side on two cores), writes a checkpoint
every `--checkpoint-every` steps (atomically: `--resume` continues a killed run) and ends
by exporting the deterministic policy, tanh of the actor's mean, and printing its figures
over 10 episodes.

The runners differ only in the reward they are trained on:
- fast: Hopper-v5's own reward (survive + forward velocity - control cost);
- slow: the forward term capped at SLOW_SPEED and a penalty on speed over SLOW_CAP, so
  that its best gait stays under the 0.7402 m/s limit.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from safecritic.envs.hopper import HOPPER_VELOCITY_LIMIT, HOPPER_X_VELOCITY_INDEX

POLICY_DIR = Path(__file__).parent / "policies"
SLOW_SPEED = 0.45  # m/s: the slow runner is paid for forward speed up to here
SLOW_CAP = 0.6  # m/s: and penalised above here, under the limit with a margin
HIDDEN = 256


def runner_reward(runner: str, reward: float, info: dict) -> float:
    """The reward a runner is trained on, from Hopper-v5's step info."""
    if runner == "fast":
        return reward
    v = float(info["x_velocity"])
    return float(info["reward_survive"]) + min(v, SLOW_SPEED) + float(info["reward_ctrl"]) - 4.0 * max(0.0, v - SLOW_CAP)


def mlp(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, out))


class Actor(nn.Module):
    """Tanh-Gaussian policy; `forward` is the deterministic action that gets exported."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim)

    def dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(-5.0, 2.0)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.dist(obs)
        pre = mean + log_std.exp() * torch.randn_like(mean)
        act = torch.tanh(pre)
        normal = torch.distributions.Normal(mean, log_std.exp()).log_prob(pre).sum(-1)
        return act, normal - torch.log1p(-act.pow(2) + 1e-6).sum(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dist(obs)[0])


class Critic(nn.Module):
    """Twin Q."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.q1, self.q2 = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class Replay:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.size, self.capacity = 0, capacity

    def add(self, o, a, r, o2, d) -> None:
        i = self.size % self.capacity
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i], self.done[i] = o, a, r, o2, d
        self.size += 1

    def state(self) -> dict:
        """Plain arrays for the checkpoint (no pickled class: loads however the script was started)."""
        return dict(vars(self))

    @classmethod
    def from_state(cls, state: dict) -> "Replay":
        replay = cls.__new__(cls)
        vars(replay).update(state)
        return replay

    def sample(self, n: int, rng: np.random.Generator) -> list[torch.Tensor]:
        idx = rng.integers(0, min(self.size, self.capacity), n)
        return [torch.as_tensor(x[idx]) for x in (self.obs, self.act, self.rew, self.next_obs, self.done)]


class SAC:
    """Soft actor-critic with automatic entropy tuning (Haarnoja et al. 2018), standard settings."""

    def __init__(self, obs_dim: int, act_dim: int, gamma: float = 0.99, tau: float = 0.005, lr: float = 3e-4) -> None:
        self.actor, self.critic = Actor(obs_dim, act_dim), Critic(obs_dim, act_dim)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.gamma, self.tau = gamma, tau
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=lr)

    def update(self, obs, act, rew, next_obs, done) -> None:
        alpha = self.log_alpha.exp().detach()
        # 1. critic: soft Bellman target through the policy at s'
        with torch.no_grad():
            a2, logp2 = self.actor.sample(next_obs)
            q_next = torch.min(*self.target(next_obs, a2)) - alpha * logp2
            target = rew + self.gamma * (1.0 - done) * q_next
        q1, q2 = self.critic(obs, act)
        critic_loss = (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.opt_critic.step()
        # 2. actor: maximise min Q - alpha log pi
        a, logp = self.actor.sample(obs)
        actor_loss = (alpha * logp - torch.min(*self.critic(obs, a))).mean()
        self.opt_actor.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.opt_actor.step()
        # 3. temperature towards the target entropy
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.opt_alpha.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.opt_alpha.step()
        # 4. target networks
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.critic.parameters()), self.tau)

    def state(self) -> dict:
        return {k: getattr(self, k).state_dict() for k in ("actor", "critic", "target", "opt_actor", "opt_critic", "opt_alpha")} | {
            "log_alpha": self.log_alpha.detach().clone()}

    def load(self, state: dict) -> None:
        for k in ("actor", "critic", "target", "opt_actor", "opt_critic", "opt_alpha"):
            getattr(self, k).load_state_dict(state[k])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])


def evaluate(policy: nn.Module, episodes: int = 10, seed: int = 10_000) -> dict[str, float]:
    """The deterministic policy on Hopper-v5: return, mean x-velocity, share of steps over the limit, falls."""
    env = gym.make("Hopper-v5")
    rets, speeds, over, falls, lengths = [], [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        ret, vs, done, trunc = 0.0, [], False, False
        while not (done or trunc):
            with torch.no_grad():
                act = policy(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()
            obs, r, done, trunc, info = env.step(act)
            ret += r
            vs.append(obs[HOPPER_X_VELOCITY_INDEX])  # the task's cost rule reads this entry
        rets.append(ret), speeds.append(np.mean(vs)), over.append(np.mean(np.array(vs) > HOPPER_VELOCITY_LIMIT))
        falls.append(float(done)), lengths.append(len(vs))
    return {"return": float(np.mean(rets)), "speed": float(np.mean(speeds)), "over_limit": float(np.mean(over)),
            "falls": float(np.mean(falls)), "length": float(np.mean(lengths))}


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(runner: str, steps: int, out: Path, work: Path, seed: int, checkpoint_every: int, resume: bool) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make("Hopper-v5")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent, replay = SAC(obs_dim, act_dim), Replay(steps, obs_dim, act_dim)
    work.mkdir(parents=True, exist_ok=True)
    ckpt, start = work / f"{runner}.ckpt", 0
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        agent.load(state["agent"])
        replay, start, rng = Replay.from_state(state["replay"]), state["step"], state["rng"]
        torch.set_rng_state(state["torch_rng"])
    obs, _ = env.reset(seed=seed + start)
    warmup, batch = 5000, 256
    for step in tqdm(range(start, steps), initial=start, total=steps, desc=f"SAC {runner}", mininterval=10):
        if step < warmup:
            act = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            with torch.no_grad():
                act = agent.actor.sample(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0][0].numpy()
        nxt, r, done, trunc, info = env.step(act)
        replay.add(obs, act, runner_reward(runner, r, info), nxt, float(done))
        obs = nxt
        if done or trunc:
            obs, _ = env.reset(seed=seed + step + 1)
        if step >= warmup:
            agent.update(*replay.sample(batch, rng))
        if (step + 1) % checkpoint_every == 0:
            atomic_save({"agent": agent.state(), "replay": replay.state(), "step": step + 1, "rng": rng,
                         "torch_rng": torch.get_rng_state()}, ckpt)
    figures = evaluate(agent.actor)
    out.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(copy.deepcopy(agent.actor).eval())
    tmp = out.with_suffix(".tmp")
    scripted.save(str(tmp))
    os.replace(tmp, out)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", choices=("fast", "slow"), required=True, help="which behaviour policy to train")
    ap.add_argument("--steps", type=int, default=300_000, help="environment steps (one SAC update each after warm-up)")
    ap.add_argument("--out", type=Path, default=None, help="TorchScript file (default: envs/hopper/policies/RUNNER.pt)")
    ap.add_argument("--work", type=Path, default=Path("runs/hopper_sac"), help="folder for checkpoints")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=20_000)
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work")
    args = ap.parse_args()
    out = args.out or POLICY_DIR / f"{args.runner}.pt"
    t0 = time.perf_counter()
    figures = train(args.runner, args.steps, out, args.work, args.seed, args.checkpoint_every, args.resume)
    print(f"{args.runner}: saved {out} after {args.steps} steps in {(time.perf_counter() - t0) / 60:.1f} min; "
          + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
