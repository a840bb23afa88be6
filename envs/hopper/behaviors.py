"""HopperVelocity's behaviours: two learned runners (envs/hopper/policies/*.pt, trained once by
`python -m safecritic.envs.hopper.train_behaviors`) with action noise, and a noisy mixture.

- `fast`: the runner trained on Hopper's own reward; it breaks the 0.7402 m/s limit.
- `slow`: the runner trained with its speed capped; it keeps within the limit.
- `mixed`: switches between the two every 50-150 steps with more noise: the data's
  transitions from within the limit to over it and back, which a critic of the episode's
  summed cost needs to see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

POLICY_DIR = Path(__file__).parent / "policies"


@lru_cache(maxsize=None)
def runner(name: str):
    """The TorchScript runner `name` (obs [B, 11] -> action [B, 3]), loaded once per process."""
    import torch

    path = POLICY_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; train it with: python -m safecritic.envs.hopper.train_behaviors --runner {name}")
    module = torch.jit.load(str(path), map_location="cpu").eval()
    torch.set_num_threads(1)
    return module


def runner_action(name: str, obs: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return runner(name)(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))[0].numpy()


@dataclass
class Runner:
    """A learned runner's deterministic action plus Gaussian noise, clipped to the box."""

    name: str
    policy: str
    noise_std: float = 0.1
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        noisy = runner_action(self.policy, obs) + self._rng.normal(0.0, self.noise_std, size=3)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)


@dataclass
class Mixed:
    """Fast and slow in turns of 50-150 steps, noise 0.2."""

    name: str = "mixed"
    noise_std: float = 0.2
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _left: int = 0
    _policy: str = "slow"

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._policy = "fast" if rng.random() < 0.5 else "slow"
        self._left = int(rng.integers(50, 151))

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._left <= 0:
            self._policy = "slow" if self._policy == "fast" else "fast"
            self._left = int(self._rng.integers(50, 151))
        self._left -= 1
        noisy = runner_action(self._policy, obs) + self._rng.normal(0.0, self.noise_std, size=3)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)


HOPPER_BEHAVIORS = {
    "fast": lambda: Runner("fast", "fast"),
    "slow": lambda: Runner("slow", "slow"),
    "mixed": Mixed,
}
