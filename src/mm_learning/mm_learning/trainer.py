"""Train a servo policy for the user's objective in the MuJoCo twin (ROS-free).

- :func:`load_preset`: the per-algorithm SB3 hyperparameters in ``mm_learning/presets/<algo>.yaml``.
- :class:`Trainer`: SB3 PPO (default), SAC, TD3, DDPG or A2C on vectorised twins, evaluated during training on
  fixed seeded moves against the PID baseline for the same objective; stops when the objective's target is
  beaten, at the step or time budget, or when cancelled. Checkpoints are atomic, and a run killed at any moment
  resumes from its last checkpoint with its step count.
- :class:`Progress`: what the progress hook receives (the learner node turns it into action feedback).

Run directory layout (``TrainConfig.out_dir``)::

    config.json                    the run's configuration (a resumed run must ask for the same objective/algo)
    model.zip                      the model at the end of the last finished part of the run
    best_model.zip                 the evaluated model with the highest mean return (what to export)
    checkpoints/latest             name of the newest complete checkpoint (replaced atomically)
    checkpoints/step-<n>/          model.zip, replay_buffer.pkl (off-policy), rng.pkl, state.json
    tb/                            TensorBoard logs
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pickle
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from mm_contract.objectives import Objective, parse_objective
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from mm_learning.actor import actor_from_sb3
from mm_learning.errors import TrainingError
from mm_learning.goals import SB3_ALGORITHMS

ALGORITHMS: dict[str, type[BaseAlgorithm]] = dict(zip(SB3_ALGORITHMS, (PPO, SAC, TD3, DDPG, A2C), strict=True))
DEFAULT_ALGORITHM = "ppo"
DEFAULT_OBJECTIVE = parse_objective("accuracy")

_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
_LATEST = "latest"
BEST_MODEL = "best_model.zip"
_REWARD_NORMALIZER = "reward_normalizer.pkl"
_STEP_DIR_DIGITS = 12
# Seed of the evaluation moves and their sensor noise; far from the training envs' seeds (the run's seed + n).
EVAL_SEED = 1_000_000
# Seeds of the export's calibration, held-out and closed-loop moves: disjoint from each other and from EVAL_SEED.
EXPORT_CALIBRATION_SEED, EXPORT_HELD_OUT_SEED, EXPORT_CHECK_SEED = 2_000_000, 3_000_000, 4_000_000
CLONE_SEED = 5_000_000
# Behaviour cloning of the baseline (preset `clone_baseline_episodes`): gradient steps, and the label limit that
# keeps tanh-squashed actors (SAC, TD3, DDPG) out of their flat tails.
CLONE_GRADIENT_STEPS = 3000
CLONE_ACTION_LIMIT = 0.98
# Evaluations of mm_sim's PID tuner when no tuned gains are cached for the profile/load/objective.
BASELINE_TUNING_EVALUATIONS = 12


# --------------------------------------------------------------------------------------------------------------
# Objective and presets


def load_preset(algorithm: str) -> dict[str, Any]:
    """The preset of ``algorithm`` (``presets/<algorithm>.yaml``): n_envs, hyperparameters, policy_kwargs."""
    if algorithm not in ALGORITHMS:
        msg = f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        raise TrainingError(msg)
    text = resources.files("mm_learning").joinpath("presets", f"{algorithm}.yaml").read_text(encoding="utf-8")
    preset = yaml.safe_load(text)
    if not isinstance(preset, dict) or not isinstance(preset.get("hyperparameters"), dict):
        msg = f"preset {algorithm}.yaml must be a mapping with a 'hyperparameters' mapping"
        raise TrainingError(msg)
    return preset


# --------------------------------------------------------------------------------------------------------------
# The twin: environments, PID baseline and evaluation on seeded moves


@functools.cache
def matched_velocity_scale(profile: str, load: str) -> float:
    """A velocity scale (rad/s) matched to ``load``: the peak speed of its fastest move across ±π, rounded up.

    Capped at the profile's own scale (the motor's no-load speed on mm_v3). The policy image carries the scale,
    so it may differ per load. Why: mm_v3's 160 rad/s suits its disc and spring (time-optimal moves reach
    ~160 rad/s) but the pendulum peaks at 39 rad/s and its tuned PIDs stay below ~27, so its velocity feature
    used only a tenth of [-1, 1]: the PID's velocity gain then is ~180 action units per feature unit, which the
    clone could not fit (speed PID cloned at 160 rad/s: 70 % of 20 moves settled; at 40 rad/s: all, in 0.260 s
    vs the PID's 0.265 s; docs/learning.md, "Observation scale").
    """
    from mm_contract.profiles import load_profile
    from mm_sim.baselines import bang_bang_schedule
    from mm_sim.model import Plant

    servo = load_profile(profile)
    plant = Plant(servo, servo.load(load))
    actions = bang_bang_schedule(plant, start_rad=-math.pi, target_rad=math.pi)
    plant.reset(-math.pi)
    peak = 0.0
    for action in actions:
        plant.advance(action * servo.driver.current_limit_a)
        peak = max(peak, abs(plant.velocity_rad_s))
    return float(min(servo.observation.vel_scale_rad_s, math.ceil(peak)))


@dataclass(frozen=True)
class TwinSpec:
    """Which twin to train in.

    Attributes:
        profile: mm_sim profile name or path (``mm_sim.list_profiles()``).
        load: the profile's load ("inertia_disk", "pendulum", "spring").
        objective: the objective (``mm_contract.objectives.parse_objective``).
        episode_s: episode length (s); one step move per episode.
        randomize: draw each training episode's plant from the profile's randomisation ranges (evaluation
            always runs the nominal plant).
        vel_scale_rad_s: velocity giving a velocity feature of 1 (rad/s), written into the exported policy's
            image; None: the profile's. :func:`matched_velocity_scale` gives one matched to the load.
    """

    profile: str = "mm_v3"
    load: str = "pendulum"
    objective: Objective = DEFAULT_OBJECTIVE
    episode_s: float = 1.0
    randomize: bool = False
    vel_scale_rad_s: float | None = None

    def make_env(self, *, randomize: bool | None = None) -> gym.Env[Any, Any]:
        """A fresh twin env for this objective (``randomize`` overrides the spec's choice)."""
        from mm_contract.profiles import load_profile
        from mm_sim.env import ServoEnv

        profile = load_profile(self.profile)
        scale = self.vel_scale_rad_s or profile.observation.vel_scale_rad_s
        observation = dataclasses.replace(profile.observation, vel_scale_rad_s=scale)
        return ServoEnv(
            dataclasses.replace(profile, observation=observation),
            load=self.load,
            objective=self.objective,
            episode_s=self.episode_s,
            # One move per episode: the evaluation metrics describe a single step response.
            hold_s=self.episode_s,
            randomize=self.randomize if randomize is None else randomize,
        )

    def moves(self, count: int) -> list[Any]:
        """The fixed seeded step moves of evaluations (``mm_sim.evaluate.seeded_moves``), one per episode."""
        from mm_sim.evaluate import seeded_moves

        return seeded_moves(count, seed=EVAL_SEED, duration_s=self.episode_s)

    def make_baseline(self, env: gym.Env[Any, Any], moves: list[Any]) -> Any:
        """The PID baseline tuned for this objective (an ``mm_sim.evaluate.Controller``).

        Gains come from mm_sim's cache of tuned gains for the objective (for a mix: its largest component);
        when nothing is cached for the profile/load, they are tuned here on ``moves`` for the objective itself.
        """
        from mm_sim.baselines import PidController, initial_gains, tune_pid, tuned_gains
        from mm_sim.errors import MmSimError

        servo = env.unwrapped
        try:
            gains = tuned_gains(servo.profile, self.load, self.objective.base)  # type: ignore[attr-defined]
        except MmSimError:
            start = initial_gains(servo.profile, servo.plant.load)  # type: ignore[attr-defined]
            gains, _ = tune_pid(servo, moves=moves, start=start, evaluations=BASELINE_TUNING_EVALUATIONS)  # type: ignore[arg-type]
        return PidController(gains)


def policy_controller(model: BaseAlgorithm) -> Any:
    """The deterministic actor of ``model`` as an mm_sim controller (the exact network the exporter exports)."""
    from mm_sim.evaluate import PolicyController

    return PolicyController(actor_from_sb3(model))


def evaluate_moves(env: gym.Env[Any, Any], controller: Any, moves: list[Any]) -> dict[str, float]:
    """Mean metrics of ``controller`` over ``moves`` (mm_sim's shared metrics and ``Evaluation.summary``).

    Adds the two the summary leaves out: ``mean_rms_error_rad`` and ``mean_command_smoothness``.
    """
    from mm_sim.evaluate import evaluate

    return summarize(evaluate(env.unwrapped, controller, moves, seed=EVAL_SEED))  # type: ignore[arg-type]


def summarize(evaluation: Any) -> dict[str, float]:
    """``mm_sim.evaluate.Evaluation.summary`` plus ``mean_rms_error_rad`` and ``mean_command_smoothness``."""
    return evaluation.summary() | {
        "mean_rms_error_rad": float(np.mean([m.rms_error_rad for m in evaluation.metrics])),
        "mean_command_smoothness": float(np.mean([m.command_smoothness for m in evaluation.metrics])),
    }


def beats_target(objective: Objective, policy: Mapping[str, float], pid: Mapping[str, float]) -> bool:
    """Whether the policy meets the objective's target against the PID on the same moves (issue 4 goals).

    speed: settles every move, mean settling time >= 30 % shorter; energy: >= 25 % less energy, settling as
    often and as fast; accuracy: lower steady-state and RMS error; smooth, a mix or term weights: a higher mean return
    under the objective's own reward.
    """
    mix = objective.mix
    if len(mix) != 1 or "smooth" in mix:
        return policy["mean_return"] > pid["mean_return"]
    settles_all = policy["settled_fraction"] == 1.0
    # A PID that left some moves unsettled has a NaN or optimistic mean: settling them all is then the bar.
    pid_time = pid["mean_settling_time_s"] if pid["settled_fraction"] == 1.0 else math.inf
    name = next(iter(mix))
    if name == "speed":
        return settles_all and policy["mean_settling_time_s"] <= 0.7 * pid_time
    if name == "energy":
        return (
            policy["mean_energy_j"] <= 0.75 * pid["mean_energy_j"]
            and policy["settled_fraction"] >= pid["settled_fraction"]
            and (not settles_all or policy["mean_settling_time_s"] <= pid_time)
        )
    return (
        policy["mean_steady_state_error_rad"] < pid["mean_steady_state_error_rad"]
        and policy["mean_rms_error_rad"] < pid["mean_rms_error_rad"]
    )


def _actor_net(model: BaseAlgorithm) -> torch.nn.Module:
    """The torch modules of the deterministic actor, output squashed to [-1, 1] as the exported actor is."""
    policy: Any = model.policy  # SB3 types it as a generic Module
    if isinstance(model, PPO | A2C):
        return torch.nn.Sequential(*policy.mlp_extractor.policy_net, policy.action_net, torch.nn.Hardtanh())
    if isinstance(model, SAC):
        return torch.nn.Sequential(*policy.actor.latent_pi, policy.actor.mu, torch.nn.Tanh())
    return policy.actor.mu  # TD3/DDPG: ends in Tanh


def clone_controller(
    model: BaseAlgorithm, env: gym.Env[Any, Any], controller: Any, *, episodes: int, seed: int, noise: float = 0.1
) -> float:
    """Fit the actor of ``model`` to ``controller`` by behaviour cloning (supervised, in place).

    The controller drives ``episodes`` seeded episodes of ``env`` with Gaussian noise (std ``noise``) added to
    its actions, so the data also covers states just off its own trajectories; the labels are its noiseless
    actions. Returns the final mean squared action error.
    """
    rng = np.random.default_rng(seed)
    observations, labels = [], []
    for episode in range(episodes):
        observation, info = env.reset(seed=seed + episode)
        controller.reset(env.unwrapped, info)
        truncated = False
        while not truncated:
            action = np.asarray(controller(observation, info), dtype=np.float32).reshape(1)
            observations.append(observation)
            labels.append(action)
            noisy = np.clip(action + rng.normal(0.0, noise, 1), -1.0, 1.0).astype(np.float32)
            observation, _, _, truncated, info = env.step(noisy)
    obs = torch.as_tensor(np.asarray(observations))
    target = torch.as_tensor(np.clip(np.asarray(labels), -CLONE_ACTION_LIMIT, CLONE_ACTION_LIMIT))
    net = _actor_net(model)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(CLONE_GRADIENT_STEPS):
        batch = torch.randint(0, len(obs), (512,), generator=generator)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(obs[batch]), target[batch])
        loss.backward()
        optimizer.step()
    if isinstance(model, TD3):  # DDPG is a TD3: its target actor must start from the cloned actor
        model.actor_target.load_state_dict(model.actor.state_dict())
    return float(loss.detach())


def evaluate_model(model: BaseAlgorithm, twin: TwinSpec, moves: int) -> dict[str, dict[str, float]]:
    """The deterministic actor of ``model`` and the PID tuned for the objective on the same seeded moves."""
    env = twin.make_env(randomize=False)
    try:
        seeded = twin.moves(moves)
        return {
            "policy": evaluate_moves(env, policy_controller(model), seeded),
            "pid": evaluate_moves(env, twin.make_baseline(env, seeded), seeded),
        }
    finally:
        env.close()


def export_trained(
    model: BaseAlgorithm,
    twin: TwinSpec,
    *,
    private_key: Any,
    out_dir: Path,
    moves: int = 10,
    name: str = "policy",
    metrics: Mapping[str, float] | None = None,
    **export_options: Any,
) -> Any:
    """Export a trained model with :func:`mm_learning.export.export_policy` (checks, signature, artifacts).

    Calibration, held-out and closed-loop observations come from rollouts of the float actor on disjoint
    seeded moves of the nominal twin. ``export_options`` go to ``export_policy`` (``scheme``, ``budget``).
    Returns the ``ExportResult``; raises ``PolicyRejected`` naming the failed check.
    """
    from mm_learning.acceptance import rollout_observations
    from mm_learning.export import ClosedLoopSetup, export_policy

    actor = actor_from_sb3(model)

    def make_env() -> gym.Env[Any, Any]:
        return twin.make_env(randomize=False)

    calibration = rollout_observations(make_env, actor, range(EXPORT_CALIBRATION_SEED, EXPORT_CALIBRATION_SEED + moves))
    held_out = rollout_observations(make_env, actor, range(EXPORT_HELD_OUT_SEED, EXPORT_HELD_OUT_SEED + moves))
    probe = make_env()
    scales = probe.unwrapped.scales  # type: ignore[attr-defined]
    probe.close()
    return export_policy(
        actor,
        scales=scales,
        representative_obs=calibration,
        held_out_obs=held_out,
        closed_loop_setup=ClosedLoopSetup(make_env, range(EXPORT_CHECK_SEED, EXPORT_CHECK_SEED + moves)),
        private_key=private_key,
        out_dir=out_dir,
        name=name,
        objective=twin.objective.text,
        training_steps=int(model.num_timesteps),
        metrics=metrics,
        **export_options,
    )


def build_model(
    algorithm: str,
    env: Any,
    *,
    seed: int,
    overrides: Mapping[str, Any] | None = None,
    leave_out: tuple[str, ...] = (),
    tensorboard_log: str | None = None,
    device: str = "cpu",
) -> BaseAlgorithm:
    """A new SB3 model from the algorithm's preset (hyperparameters, policy_kwargs, action noise).

    Args:
        algorithm: one of :data:`ALGORITHMS`.
        env: the env (or vectorised env) the model is built for; only its spaces matter to an online learner.
        seed: model seed.
        overrides: hyperparameters replacing the preset's.
        leave_out: preset hyperparameters to drop (e.g. the env-driven ones when the model never steps an env).
        tensorboard_log: TensorBoard directory, or None.
        device: torch device of the networks ("cpu", "cuda", "cuda:1" or "auto": CUDA when there is a GPU).
    """
    preset = load_preset(algorithm)
    hyperparameters = {k: v for k, v in preset["hyperparameters"].items() if k not in leave_out}
    hyperparameters |= dict(overrides or {})
    policy_kwargs = dict(preset.get("policy_kwargs", {}))
    activation = policy_kwargs.get("activation_fn", "tanh")
    if activation not in _ACTIVATIONS:
        msg = f"preset {algorithm}.yaml: activation_fn {activation!r} must be one of {list(_ACTIVATIONS)}"
        raise TrainingError(msg)
    policy_kwargs["activation_fn"] = _ACTIVATIONS[activation]
    if "action_noise_std" in preset:
        sigma = float(preset["action_noise_std"]) * np.ones(1)
        hyperparameters["action_noise"] = NormalActionNoise(mean=np.zeros(1), sigma=sigma)
    return ALGORITHMS[algorithm](
        "MlpPolicy",
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        tensorboard_log=tensorboard_log,
        verbose=0,
        device=device,
        **hyperparameters,
    )


# --------------------------------------------------------------------------------------------------------------
# Configuration, progress and result


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        out_dir: run directory (checkpoints, TensorBoard logs); a run that has a checkpoint there resumes.
        twin: the twin and objective.
        algorithm: one of :data:`ALGORITHMS`.
        max_steps: env step budget (0: none, then max_time_s must be > 0).
        max_time_s: wall-time budget (s) (0: none).
        budget_per_part: whether max_steps and max_time_s count from the start of this part of the run (a
            learner goal trains its own budget, also when it resumes a run) or over all its resumed parts (False:
            a killed `mm train` run finishes the budget it was given).
        seed: seed of the model, the envs and the RNGs.
        n_envs: vectorised envs (0: the preset's).
        eval_every_steps: evaluate every this many env steps (0: only at the end).
        eval_moves: seeded moves per evaluation.
        checkpoint_every_steps: checkpoint every this many env steps (a checkpoint is also written at the end).
        stop_on_target: stop as soon as an evaluation beats the objective's target.
        hyperparameters: overrides of the preset's hyperparameters.
        clone_baseline_episodes: episodes of the PID baseline to clone into a new model before RL (None: the
            preset's ``clone_baseline_episodes``; 0: start from a random policy).
        tensorboard: write TensorBoard logs under ``out_dir/tb``.
        progress_bar: show SB3's progress bar (tqdm/rich) on the terminal.
        device: torch device of the networks: "cpu" (default), "cuda", "cuda:N" or "auto" (CUDA when there is a
            GPU). The firmware's model budget keeps the policy near 2 × 48 units, too small for a GPU to pay off:
            every step is a few tiny matrix products dominated by kernel launches and copies (docs/learning.md).
    """

    out_dir: Path
    twin: TwinSpec = field(default_factory=TwinSpec)
    algorithm: str = DEFAULT_ALGORITHM
    max_steps: int = 100_000
    max_time_s: float = 0.0
    budget_per_part: bool = False
    seed: int = 0
    n_envs: int = 0
    eval_every_steps: int = 20_000
    eval_moves: int = 10
    checkpoint_every_steps: int = 20_000
    stop_on_target: bool = True
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    clone_baseline_episodes: int | None = None
    tensorboard: bool = True
    progress_bar: bool = False
    device: str = "cpu"

    def validate(self) -> None:
        """Refuse a configuration that cannot run, naming the field."""
        load_preset(self.algorithm)
        try:
            device = torch.device("cpu" if self.device == "auto" else self.device)
        except RuntimeError as exc:
            raise TrainingError(f"device {self.device!r}: {exc}; use cpu, cuda, cuda:N or auto") from exc
        if device.type not in ("cpu", "cuda"):
            raise TrainingError(f"device {self.device!r}: use cpu, cuda, cuda:N or auto")
        if device.type == "cuda" and not torch.cuda.is_available():
            msg = f"device {self.device!r}: this torch ({torch.__version__}) sees no CUDA GPU; use cpu or auto"
            raise TrainingError(msg)
        if self.max_steps < 0 or not (math.isfinite(self.max_time_s) and self.max_time_s >= 0.0):
            msg = f"max_steps={self.max_steps} and max_time_s={self.max_time_s} must be >= 0"
            raise TrainingError(msg)
        if self.max_steps == 0 and self.max_time_s == 0.0:
            msg = "the budget is zero: give max_steps > 0 or max_time_s > 0"
            raise TrainingError(msg)
        if self.eval_moves < 1 or self.eval_every_steps < 0 or self.checkpoint_every_steps < 1 or self.n_envs < 0:
            msg = (
                f"eval_moves={self.eval_moves} must be >= 1, checkpoint_every_steps={self.checkpoint_every_steps}"
                f" >= 1, eval_every_steps={self.eval_every_steps} and n_envs={self.n_envs} >= 0"
            )
            raise TrainingError(msg)

    def to_json(self) -> dict[str, Any]:
        """JSON form (written to ``config.json``)."""
        data = dataclasses.asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["twin"]["objective"] = self.twin.objective.text
        data["hyperparameters"] = dict(self.hyperparameters)
        return data

    @classmethod
    def read(cls, run_dir: Path) -> TrainConfig:
        """The configuration a run was trained with, from its ``config.json`` (``out_dir`` is ``run_dir``).

        Raises:
            TrainingError: ``run_dir`` holds no readable ``config.json`` of this version's fields.
            ObjectiveError: its objective is not one this version knows.
        """
        path = run_dir / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            twin_data = data.pop("twin")
            twin = TwinSpec(**(twin_data | {"objective": parse_objective(twin_data["objective"])}))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            msg = f"{path}: not a training run's configuration ({exc}); give the --out directory of `mm train`"
            raise TrainingError(msg) from exc
        data.pop("out_dir", None)
        try:
            return cls(out_dir=run_dir, twin=twin, **data)
        except TypeError as exc:
            msg = f"{path}: {exc}; the run was written by another version of mm_learning, train it again"
            raise TrainingError(msg) from exc


@dataclass(frozen=True)
class Progress:
    """A progress report.

    Attributes:
        phase: "training" or "evaluating".
        steps: env steps so far (over resumes).
        steps_per_s: env steps per second of wall time since the last report.
        mean_reward: mean reward per env step since the last report.
        eval_metrics: the policy's latest evaluation (mean over the seeded moves), empty before the first.
        baseline_metrics: the PID baseline on the same moves.
    """

    phase: str
    steps: int
    steps_per_s: float
    mean_reward: float
    eval_metrics: Mapping[str, float]
    baseline_metrics: Mapping[str, float]


@dataclass(frozen=True)
class TrainResult:
    """How a run ended.

    Attributes:
        model: the trained model.
        steps: env steps over the whole run.
        stop_reason: "target" (beat the objective's target), "steps", "time" or "cancelled".
        target_beaten: the final evaluation beat the target.
        eval_metrics: the final evaluation of the policy.
        baseline_metrics: the PID baseline on the same moves.
        checkpoint_dir: the checkpoint written at the end.
        elapsed_s: wall time over all parts of the run (s).
        best_model_path: ``out_dir/best_model.zip``, the evaluated model with the highest mean return so far
            (what to export: RL can make a policy worse, and the last model is not always the best).
        best_steps: the step count of that model (-1, and no best model, when a cancel came before the first
            evaluation).
        best_metrics: its evaluation (empty when there is none).
    """

    model: BaseAlgorithm
    steps: int
    stop_reason: str
    target_beaten: bool
    eval_metrics: Mapping[str, float]
    baseline_metrics: Mapping[str, float]
    checkpoint_dir: Path
    elapsed_s: float
    best_model_path: Path
    best_steps: int
    best_metrics: Mapping[str, float]


# --------------------------------------------------------------------------------------------------------------
# Checkpoints


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = out_dir / "checkpoints" / _LATEST
    if not pointer.is_file():
        return None
    path = out_dir / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    if not (path / "state.json").is_file():
        msg = f"{pointer} names {path.name}, which is incomplete; delete {out_dir / 'checkpoints'} to start over"
        raise TrainingError(msg)
    return path


def _fsync_tree(path: Path) -> None:
    for item in [*path.iterdir(), path]:
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(out_dir: Path, model: BaseAlgorithm, state: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically and make it the latest; returns its directory.

    Everything is written into a temporary directory, synced, renamed to ``step-<n>``, and only then the
    ``latest`` pointer is replaced (os.replace is atomic), so a kill at any moment leaves the previous
    checkpoint or the new one in force, never a partial one. Older checkpoints are removed afterwards.
    """
    root = out_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    model.save(tmp / "model.zip")
    if isinstance(model, OffPolicyAlgorithm):
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    reward_normalizer = model.get_vec_normalize_env()
    if reward_normalizer is not None:
        reward_normalizer.save(str(tmp / _REWARD_NORMALIZER))
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    (tmp / "rng.pkl").write_bytes(pickle.dumps(rng))
    (tmp / "state.json").write_text(json.dumps(dict(state), indent=1), encoding="utf-8")
    _fsync_tree(tmp)
    final = root / f"step-{int(state['steps']):0{_STEP_DIR_DIGITS}d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    pointer_tmp = root / f".{_LATEST}.tmp"
    with pointer_tmp.open("w", encoding="utf-8") as handle:
        handle.write(final.name)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, root / _LATEST)
    _fsync_tree(root)
    for stale in root.iterdir():
        if stale.is_dir() and stale != final:
            shutil.rmtree(stale, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Trains one run; see the module docstring.

    Args:
        config: the run.
        on_progress: called with a :class:`Progress` about once a second and after each evaluation.
        should_cancel: polled every env step (and between the set-up phases); when it returns True the run stops
            with a checkpoint of the step reached, without a final evaluation (a cancel ends within one
            vectorised env step, or one PPO/A2C update when it falls into one).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.objective = config.twin.objective
        self.preset = load_preset(config.algorithm)
        self._on_progress = on_progress or (lambda _progress: None)
        self._should_cancel = should_cancel or (lambda: False)
        self.eval_moves = config.twin.moves(config.eval_moves)
        self.eval_metrics: dict[str, float] = {}
        self.baseline_metrics: dict[str, float] = {}

    # -- building --------------------------------------------------------------------------------------------

    def _vec_env(self, seed: int, checkpoint: Path | None) -> VecEnv:
        n_envs = self.config.n_envs or int(self.preset.get("n_envs", 1))
        # DummyVecEnv: measured faster than SubprocVecEnv for this cheap env on 2 cores (ml-stack-notes).
        env = make_vec_env(self.config.twin.make_env, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)
        if not self.preset.get("normalize_reward", False):
            return env
        if checkpoint is not None and (checkpoint / _REWARD_NORMALIZER).is_file():
            return VecNormalize.load(str(checkpoint / _REWARD_NORMALIZER), env)
        # Rewards only: the observation is the contract's, already in [-1, 1], and is what the servo computes.
        gamma = float({**self.preset["hyperparameters"], **self.config.hyperparameters}.get("gamma", 0.99))
        return VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)

    def _new_model(self, env: VecEnv) -> BaseAlgorithm:
        return build_model(
            self.config.algorithm,
            env,
            seed=self.config.seed,
            overrides=self.config.hyperparameters,
            tensorboard_log=str(self.config.out_dir / "tb") if self.config.tensorboard else None,
            device=self.config.device,
        )

    def _resume(self, checkpoint: Path, env: VecEnv) -> tuple[BaseAlgorithm, dict[str, Any]]:
        state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        for key in ("algorithm", "objective"):
            wanted = self.config.algorithm if key == "algorithm" else self.config.twin.objective.text
            if state[key] != wanted:
                msg = (
                    f"{self.config.out_dir} holds a {key}={state[key]!r} run, not {wanted!r}; "
                    "use another out_dir or the same settings to resume"
                )
                raise TrainingError(msg)
        model = ALGORITHMS[self.config.algorithm].load(
            checkpoint / "model.zip",
            env=env,
            tensorboard_log=str(self.config.out_dir / "tb") if self.config.tensorboard else None,
            device=self.config.device,
        )
        if isinstance(model, OffPolicyAlgorithm):
            model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
        rng = pickle.loads((checkpoint / "rng.pkl").read_bytes())
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        return model, state

    # -- running ---------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train (or resume) until the target is beaten, the budget is spent or the run is cancelled."""
        start = time.monotonic()  # the time budget counts setup and the baseline, not just learning
        config = self.config
        config.out_dir.mkdir(parents=True, exist_ok=True)
        (config.out_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1), encoding="utf-8")
        # One intra-op thread: on this 2-core VM, 2 threads made every small policy forward ~1000x slower
        # (1.5 ms vs 1.4 us for a 2x64 tanh, measured with the other core busy); the batches are too small to split.
        torch.set_num_threads(1)
        checkpoint = latest_checkpoint(config.out_dir)
        resumed_steps = 0 if checkpoint is None else json.loads((checkpoint / "state.json").read_text())["steps"]
        # Resumed parts reseed their envs from the step count so they do not replay the first part's episodes.
        env = self._vec_env(config.seed + resumed_steps, checkpoint)
        eval_env = config.twin.make_env(randomize=False)
        try:
            self._on_progress(Progress("evaluating", resumed_steps, 0.0, math.nan, {}, {}))
            baseline = config.twin.make_baseline(eval_env, self.eval_moves)
            self.baseline_metrics = evaluate_moves(eval_env, baseline, self.eval_moves)
            if checkpoint is None:
                set_random_seed(config.seed)
                model = self._new_model(env)
                state: dict[str, Any] = {"steps": 0, "elapsed_s": 0.0, "resumes": 0}
                episodes = config.clone_baseline_episodes
                if episodes is None:
                    episodes = int(self.preset.get("clone_baseline_episodes", 0))
                if episodes:
                    self._on_progress(Progress("cloning", 0, 0.0, math.nan, {}, dict(self.baseline_metrics)))
                    state["clone_mse"] = clone_controller(model, eval_env, baseline, episodes=episodes, seed=CLONE_SEED)
            else:
                model, state = self._resume(checkpoint, env)
                state["resumes"] = int(state.get("resumes", 0)) + 1
            callback = _RunCallback(self, eval_env, state, start)
            callback.init_callback(model)
            remaining = _steps_to_train(config, model.num_timesteps)
            if self._should_cancel():
                callback.stop_reason = "cancelled"
            if remaining <= 0 or callback.out_of_time() or callback.stop_reason:
                # Nothing left to learn (resumed at the end of the budget): evaluate and checkpoint only.
                model.set_logger(configure_logger(None, []))
            else:
                model.learn(
                    total_timesteps=remaining,
                    callback=callback,
                    reset_num_timesteps=False,
                    progress_bar=config.progress_bar,
                    tb_log_name="run",
                )
            stop_reason = callback.stop_reason or ("time" if callback.out_of_time() else "steps")
            if stop_reason != "cancelled" and callback.evaluated_at != model.num_timesteps:
                callback.evaluate(model)
            # A run cancelled before its first evaluation has no metrics to judge.
            target_beaten = bool(self.eval_metrics) and beats_target(
                self.objective, self.eval_metrics, self.baseline_metrics
            )
            final = callback.checkpoint(model)
            # The model of the last checkpoint, where `mm export` and `mm eval` look for it.
            shutil.copyfile(final / "model.zip", config.out_dir / ".model.zip.tmp")
            os.replace(config.out_dir / ".model.zip.tmp", config.out_dir / "model.zip")
        finally:
            eval_env.close()
            env.close()
        return TrainResult(
            model=model,
            steps=model.num_timesteps,
            stop_reason=stop_reason,
            target_beaten=target_beaten,
            eval_metrics=dict(self.eval_metrics),
            baseline_metrics=dict(self.baseline_metrics),
            checkpoint_dir=final,
            elapsed_s=float(state["elapsed_s"]),
            best_model_path=config.out_dir / BEST_MODEL,
            best_steps=int(state["best"]["steps"]) if "best" in state else -1,
            best_metrics=dict(state["best"]["metrics"]) if "best" in state else {},
        )


def _steps_to_train(config: TrainConfig, steps: int) -> int:
    """Env steps this part of a run may take, from the run's ``steps`` so far (the step budget's remainder)."""
    if not config.max_steps:
        return 2**62
    return config.max_steps if config.budget_per_part else config.max_steps - steps


class _RunCallback(BaseCallback):
    """Budget, cancel, checkpoints, evaluation and progress inside ``model.learn``."""

    def __init__(self, trainer: Trainer, eval_env: gym.Env[Any, Any], state: dict[str, Any], start: float) -> None:
        super().__init__()
        self.trainer = trainer
        self.config = trainer.config
        self.eval_env = eval_env
        self.state = state
        self.stop_reason = ""
        self.evaluated_at = -1
        self._rate = 0.0
        self._elapsed_before_s = float(state["elapsed_s"])
        self._budget_before_s = 0.0 if self.config.budget_per_part else self._elapsed_before_s
        self._start = start
        self._last_report = (start, 0)
        self._reward_sum, self._reward_count = 0.0, 0
        self._next_eval = 0
        self._next_checkpoint = 0

    def elapsed_s(self) -> float:
        """Wall time of the whole run so far (s)."""
        return self._elapsed_before_s + time.monotonic() - self._start

    def out_of_time(self) -> bool:
        """Whether the wall-time budget is spent (over the run, or this part with ``budget_per_part``)."""
        spent_s = self._budget_before_s + time.monotonic() - self._start
        return self.config.max_time_s > 0.0 and spent_s >= self.config.max_time_s

    def _on_training_start(self) -> None:
        steps = self.model.num_timesteps
        if steps == 0 and "clone_mse" in self.state:
            # The cloned baseline competes for the best model too.
            self.evaluate(self.model)
        self._last_report = (time.monotonic(), steps)
        every = self.config.eval_every_steps
        self._next_eval = steps + every if every else 2**62
        self._next_checkpoint = steps + self.config.checkpoint_every_steps

    def _on_step(self) -> bool:
        normalizer = self.model.get_vec_normalize_env()
        rewards = self.locals["rewards"] if normalizer is None else normalizer.get_original_reward()
        self._reward_sum += float(np.sum(rewards))
        self._reward_count += len(rewards)
        steps = self.model.num_timesteps
        if self.trainer._should_cancel():
            self.stop_reason = "cancelled"
            return False
        if self.out_of_time():
            self.stop_reason = "time"
            return False
        if steps >= self._next_checkpoint:
            self._next_checkpoint = steps + self.config.checkpoint_every_steps
            self.checkpoint(self.model)
        if steps >= self._next_eval:
            self._next_eval = steps + self.config.eval_every_steps
            self.evaluate(self.model)
            objective = self.trainer.objective
            if self.config.stop_on_target and beats_target(
                objective, self.trainer.eval_metrics, self.trainer.baseline_metrics
            ):
                self.stop_reason = "target"
                return False
        if time.monotonic() - self._last_report[0] >= 1.0:
            self.report("training")
        return True

    def report(self, phase: str) -> None:
        """Send a progress report."""
        now, steps = time.monotonic(), self.model.num_timesteps
        rate = (steps - self._last_report[1]) / max(now - self._last_report[0], 1e-9)
        mean_reward = self._reward_sum / self._reward_count if self._reward_count else math.nan
        self._last_report = (now, steps)
        self._reward_sum, self._reward_count = 0.0, 0
        self.trainer._on_progress(
            Progress(
                phase, steps, rate, mean_reward, dict(self.trainer.eval_metrics), dict(self.trainer.baseline_metrics)
            )
        )

    def evaluate(self, model: BaseAlgorithm) -> None:
        """Evaluate the deterministic actor on the seeded moves and log it."""
        metrics = evaluate_moves(self.eval_env, policy_controller(model), self.trainer.eval_moves)
        self.trainer.eval_metrics = metrics
        self.evaluated_at = model.num_timesteps
        best = self.state.get("best")
        if best is None or metrics["mean_return"] > best["metrics"]["mean_return"]:
            model.save(self.config.out_dir / ".best_model.zip.tmp")
            os.replace(self.config.out_dir / ".best_model.zip.tmp", self.config.out_dir / BEST_MODEL)
            self.state["best"] = {"steps": model.num_timesteps, "metrics": metrics}
        for name, value in metrics.items():
            model.logger.record(f"eval/{name}", value)
            model.logger.record(f"pid/{name}", self.trainer.baseline_metrics.get(name, math.nan))
        model.logger.dump(model.num_timesteps)
        self.report("evaluating")

    def checkpoint(self, model: BaseAlgorithm) -> Path:
        """Write a checkpoint of the run as it is now."""
        self.state.update(
            steps=model.num_timesteps,
            elapsed_s=self.elapsed_s(),
            algorithm=self.config.algorithm,
            objective=self.config.twin.objective.text,
            seed=self.config.seed,
            eval_metrics=self.trainer.eval_metrics,
            baseline_metrics=self.trainer.baseline_metrics,
        )
        return save_checkpoint(self.config.out_dir, model, self.state)
