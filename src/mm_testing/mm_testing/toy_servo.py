"""A tiny purpose-built servo env for the mm_learning tests (stands in until tests need the real mm_sim twin).

Rigid inertia with viscous friction driven by a current command, sensed as the firmware does (14-bit encoder,
filtered velocity, one control period of latency), observed with the 8 features of docs/servo-contract.md
section 3. Its ``info`` carries ``position_rad`` and ``target_rad`` like ``MuscleMemoryServo-v0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

COUNTS_PER_REV = 16384


@dataclass(frozen=True)
class ToyScales:
    """Observation scales carried in the policy image (same attribute names as mm_sim's ObsScales)."""

    pos_scale_rad: float = 1.0
    vel_scale_rad_s: float = 40.0
    fine_gain_per_rad: float = 20.0
    current_limit_a: float = 2.0
    velocity_filter_tau_s: float = 0.002


class ToyServoEnv(gym.Env[np.ndarray, np.ndarray]):
    """Step moves of up to ±1 rad on an inertia (1e-4 kg·m², 0.05 N·m/A, 2e-4 N·m·s/rad), 1 kHz control."""

    def __init__(self, episode_steps: int = 300) -> None:
        self.scales = ToyScales()
        self.dt_s = 1e-3
        self.episode_steps = episode_steps
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(8,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def _measure(self) -> float:
        counts = np.floor(self._theta / (2 * np.pi) * COUNTS_PER_REV)
        return float(counts * 2 * np.pi / COUNTS_PER_REV)

    def _observe(self) -> np.ndarray:
        s = self.scales
        position = self._measure()
        alpha = self.dt_s / (s.velocity_filter_tau_s + self.dt_s)
        self._v += alpha * ((position - self._last_position) / self.dt_s - self._v)
        self._last_position = position
        e = self._target - position
        return np.clip(
            np.array(
                [
                    e / s.pos_scale_rad,
                    e * s.fine_gain_per_rad,
                    self._v / s.vel_scale_rad_s,
                    np.sin(position),
                    np.cos(position),
                    0.0,
                    self._prev_action,
                    self._current / s.current_limit_a,
                ],
                dtype=np.float32,
            ),
            -1.0,
            1.0,
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._theta, self._omega, self._current, self._prev_action, self._pending = 0.0, 0.0, 0.0, 0.0, 0.0
        self._target = float(self.np_random.uniform(-1.0, 1.0))
        self._v, self._last_position, self._k = 0.0, self._measure(), 0
        return self._observe(), {"position_rad": self._measure(), "target_rad": self._target}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        # The command of this tick is applied from the next tick on (contract section 1).
        self._current = self._pending * self.scales.current_limit_a
        self._pending = a
        torque = 0.05 * self._current - 2e-4 * self._omega
        self._omega += torque / 1e-4 * self.dt_s
        self._theta += self._omega * self.dt_s
        self._prev_action, self._k = a, self._k + 1
        obs = self._observe()
        error = self._target - self._measure()
        reward = -abs(error) - 0.01 * a * a
        info = {"position_rad": self._measure(), "target_rad": self._target}
        return obs, reward, False, self._k >= self.episode_steps, info


def pd_law(obs: np.ndarray) -> np.ndarray:
    """A PD law in observation units that settles the toy servo within an encoder count."""
    o = np.atleast_2d(obs)
    return np.tanh(1.0 * o[:, 0] + 0.5 * o[:, 1] - 8.0 * o[:, 2])[:, None]
