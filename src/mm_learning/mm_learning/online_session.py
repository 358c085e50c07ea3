"""The servo side of online training (ROS-free, torch-free): servos, sessions' settings, what they report.

- :class:`ServoLink`, :class:`ServoFleet`, :class:`Episode`: one or several servos of one load class, reached
  through their drivers (ROS: :mod:`mm_learning.ros_servo_link`; tests: the virtual servo in-process), that
  deploy policies and run moves;
- :class:`SessionConfig` (SB3 online sessions, :class:`mm_learning.online.OnlineSession`) and
  :class:`CalibratedConfig` (the schedule learned on the servo, :class:`mm_learning.calibration.CalibratedSession`);
- :class:`SessionProgress`, :class:`PolicyRecord`, :class:`RewardReport`, :class:`SessionResult`: what they
  report;
- :func:`evaluation_episodes`, :func:`is_whole`, :func:`move_attempts`, :func:`whole_move`,
  :func:`servo_evaluation`: evaluation moves measured on the servo.

The learner node reads the configurations' parameter defaults at start-up; nothing here loads torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from mm_contract.metrics import Response, step_metrics
from mm_contract.objectives import DEFAULT_TOLERANCE_RAD, parse_objective
from mm_contract.policy_image import MAX_POLICY_DECIMATION
from mm_contract.transitions import TransitionColumns, reward_terms
from mm_ros.parameters import parameter
from mm_sim.evaluate import Evaluation, Move

from mm_learning.errors import OnlineError
from mm_learning.goals import Progress

PHASES = ("deploying", "exploring", "training", "evaluating")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Episode:
    """One step move run by the servo's active policy.

    Attributes:
        target_rad: the policy's target (rad).
        duration_s: servo time the move is given (s).
        start_rad: when set, the servo's PID first holds this position (rad) so the move starts from rest there
            (evaluation moves); None starts from wherever the last move left the load.
        exploration_std: std of the servo's exploration noise on the normalised action (0: none).
        exploration_tau_s: its correlation time (s; 0: white).
        settle_s: servo time the PID is given to reach ``start_rad`` (s).
    """

    target_rad: float
    duration_s: float
    start_rad: float | None = None
    exploration_std: float = 0.0
    exploration_tau_s: float = 0.0
    settle_s: float = 0.0


class ServoLink(Protocol):
    """How a session reaches the servo; each call blocks until the servo has done it."""

    def deploy(self, image: bytes, metadata: Mapping[str, Any]) -> int:
        """Send a signed policy image with its export metadata (e.g. for a registry).

        Returns the CRC the servo now runs; raises OnlineError with the servo's or the driver's reason.
        """
        ...

    def run_episode(self, episode: Episode) -> TransitionColumns:
        """Run one move in POLICY mode with transitions streamed, then HOLD without streaming.

        Returns its samples, from the first one of the move (``FLAG_EPISODE_START``) to ``duration_s``.
        """
        ...

    def hold(self) -> None:
        """Put the servo in HOLD and stop streaming."""
        ...


class ServoFleet:
    """Several servos of one kind (one load class) that a session drives as one: what one runs, all run.

    A deployment goes to every servo at once; moves are spread over the servos (move ``i`` of a call on servo
    ``i % len(fleet)``, so a fixed list of evaluation moves runs each move on the same servo every time) and the
    servos run theirs at the same time, each in its own thread, its moves in order. One servo: the calling thread.

    Args:
        links: the servos.
        names: how errors name them (default ``servo0`` ...).
    """

    def __init__(self, links: Sequence[ServoLink], names: Sequence[str] = ()) -> None:
        if not links:
            raise OnlineError("a fleet needs at least one servo")
        self.links = list(links)
        self.names = list(names) or [f"servo{i}" for i in range(len(self.links))]
        if len(self.names) != len(self.links):
            msg = f"{len(self.names)} names for {len(self.links)} servos"
            raise OnlineError(msg)

    def __len__(self) -> int:
        return len(self.links)

    def _each(self, work: Callable[[int], _T]) -> list[_T]:
        """work(i) for every servo i, at once; an OnlineError names the servo (the first one that failed)."""

        def named(index: int) -> _T:
            try:
                return work(index)
            except OnlineError as exc:
                msg = f"{self.names[index]}: {exc}"
                raise OnlineError(msg) from exc

        if len(self.links) == 1:
            return [named(0)]
        with ThreadPoolExecutor(max_workers=len(self.links), thread_name_prefix="servo") as pool:
            futures = [pool.submit(named, i) for i in range(len(self.links))]
        return [future.result() for future in futures]

    def deploy(self, image: bytes, metadata: Mapping[str, Any]) -> int:
        """Deploy to every servo at once; the CRC they all run (OnlineError: one refused, or they disagree)."""
        crcs = self._each(lambda i: self.links[i].deploy(image, metadata))
        if len(set(crcs)) != 1:
            listing = ", ".join(f"{name} 0x{crc:08x}" for name, crc in zip(self.names, crcs, strict=True))
            msg = f"the servos report different policies after one deployment: {listing}"
            raise OnlineError(msg)
        return crcs[0]

    def map(self, run: Callable[[ServoLink, Episode], _T], episodes: Sequence[Episode]) -> list[_T]:
        """``run(link, episode)`` for every episode, episode ``i`` on servo ``i % len(self)``; in episode order."""
        count = len(self.links)

        def servo_moves(index: int) -> list[_T]:
            return [run(self.links[index], episode) for episode in episodes[index::count]]

        per_servo = self._each(servo_moves)
        return [per_servo[i % count][i // count] for i in range(len(episodes))]

    def run_moves(self, episodes: Sequence[Episode]) -> list[TransitionColumns]:
        """Each servo's ``run_episode`` for its episodes (as `map`), the moves' transitions in episode order."""
        return self.map(lambda link, episode: link.run_episode(episode), episodes)

    def hold(self) -> None:
        """HOLD every servo without streaming (each one tried, the first failure raised after)."""
        self._each(lambda i: self.links[i].hold())


def _range_problems(positive: Mapping[str, float], non_negative: Mapping[str, float]) -> list[str]:
    """What is wrong with settings that must be finite and > 0 (`positive`) or >= 0 (`non_negative`)."""
    problems = [f"{k}={v} must be > 0" for k, v in positive.items() if not (math.isfinite(v) and v > 0.0)]
    return problems + [f"{k}={v} must be >= 0" for k, v in non_negative.items() if not (math.isfinite(v) and v >= 0.0)]


@dataclass(frozen=True)
class SessionConfig:
    """One online session; times in servo time unless said otherwise.

    Attributes:
        objective: objective text (``mm_contract.objectives.parse_objective``).
        algorithm: sac, td3 or ddpg.
        seed: seed of a new model, the targets and the calibration sample.
        max_steps: transitions to consume (exploration and evaluation), 0: no limit.
        max_time_s: wall-time budget (s), 0: no limit.
        episode_s: length of each move (s).
        target_limit_rad: targets (and evaluation starts) are drawn in [-limit, limit] (rad).
        min_move_rad: a training target is at least this far from where the load is (rad).
        redeploy_every_s: servo time of exploration between deployments (s; of each servo: a fleet explores at
            once, one move per servo at a time).
        eval_moves: seeded evaluation moves (``mm_sim.evaluate.seeded_moves``, seed ``twin.EVAL_SEED``).
        eval_every_deploys: evaluate after every this many deployments.
        settle_s: servo time the PID is given to reach an evaluation move's start (s).
        policy_decimation: control ticks per policy decision, written into every exported image: the servo runs
            the policy every k ticks and holds its action (noise included), and the learner stores one transition
            per decision (``OnlineLearner``). 10 at the 1 kHz control rate: 100 decisions/s, so gamma 0.98 looks
            0.5 s ahead, the length of a move.
        reward_scale: factor on the rewards in the replay buffer (``OnlineLearner``); evaluations report the
            objective's own returns.
        updates_per_transition: gradient steps per new stored transition (decision; update-to-data ratio).
        max_gradient_steps_per_cycle: at most this many gradient steps between two deployments.
        learning_starts: stored transitions (decisions) before the first gradient step.
        exploration_std: noise std at the start, on the normalised action.
        exploration_std_final: noise std at the end of the budget (linear in the budget used).
        exploration_tau_s: noise correlation time (s).
        stop_on_target: stop once an evaluation reaches the target.
        hyperparameters: overrides of the algorithm preset.
    """

    objective: str
    algorithm: str = "sac"
    seed: int = 0
    max_steps: int = 0
    max_time_s: float = 0.0
    episode_s: float = 1.0
    target_limit_rad: float = parameter(math.pi, "online move targets and evaluation starts in [-limit, limit] (rad)")
    min_move_rad: float = parameter(0.2, "online training targets at least this far from the load (rad)")
    redeploy_every_s: float = parameter(5.0, "servo time of exploration between two deployments (s)")
    eval_moves: int = parameter(4, "seeded evaluation moves (exploration off) after each evaluated deployment")
    eval_every_deploys: int = parameter(1, "evaluate after every this many deployments")
    settle_s: float = parameter(0.5, "servo time the PID is given to reach an evaluation move's start (s)")
    policy_decimation: int = parameter(
        10, "control ticks per policy decision, written into every deployed image (1: every tick)"
    )
    reward_scale: float = parameter(
        10.0, "factor on the rewards in the replay buffer (evaluations report the objective's returns)"
    )
    updates_per_transition: float = parameter(2.0, "gradient steps per new stored decision (update-to-data ratio)")
    max_gradient_steps_per_cycle: int = parameter(2000, "at most this many gradient steps between two deployments")
    learning_starts: int = parameter(500, "stored decisions before the first gradient step")
    exploration_std: float = parameter(0.3, "servo exploration noise std on the normalised action at the start")
    exploration_std_final: float = parameter(0.05, "exploration noise std at the end of the budget (linear)")
    exploration_tau_s: float = parameter(0.02, "exploration noise correlation time (s; 0: white)")
    stop_on_target: bool = parameter(
        True, "stop once an evaluation beats the objective's target against the start policy"
    )
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse a configuration that cannot run, naming the field (OnlineError)."""
        parse_objective(self.objective)
        positive = {
            "episode_s": self.episode_s,
            "target_limit_rad": self.target_limit_rad,
            "redeploy_every_s": self.redeploy_every_s,
            "reward_scale": self.reward_scale,
        }
        non_negative = {
            "max_time_s": self.max_time_s,
            "min_move_rad": self.min_move_rad,
            "settle_s": self.settle_s,
            "updates_per_transition": self.updates_per_transition,
            "exploration_std": self.exploration_std,
            "exploration_std_final": self.exploration_std_final,
            "exploration_tau_s": self.exploration_tau_s,
        }
        problems = _range_problems(positive, non_negative)
        if self.max_steps < 0 or (self.max_steps == 0 and self.max_time_s == 0.0):
            problems.append("the budget is zero: give max_steps > 0 or max_time_s > 0")
        if self.eval_moves < 1 or self.eval_every_deploys < 1 or self.max_gradient_steps_per_cycle < 1:
            problems.append("eval_moves, eval_every_deploys and max_gradient_steps_per_cycle must be >= 1")
        if not 1 <= self.policy_decimation <= MAX_POLICY_DECIMATION:
            problems.append(f"policy_decimation={self.policy_decimation} must be in [1, {MAX_POLICY_DECIMATION}]")
        if self.learning_starts < 0:
            problems.append(f"learning_starts={self.learning_starts} must be >= 0")
        if 2.0 * self.min_move_rad >= 2.0 * self.target_limit_rad:
            problems.append(f"min_move_rad={self.min_move_rad} leaves no target in ±{self.target_limit_rad} rad")
        if problems:
            raise OnlineError("; ".join(problems))


@dataclass(frozen=True)
class CalibratedConfig:
    """One online schedule session; times in servo time unless said otherwise.

    Attributes:
        objective: a named objective or a mix whose classical controller is PTOS.
        profile: the shipped profile the servo is configured from.
        load: its load (what the twin starts from; the calibration finds how the servo's differs).
        seed: seed of the calibration search and of the training (round k trains with seed + k).
        generations: ES generations per round on the calibrated twin (``schedule.ScheduleConfig``).
        eval_moves: seeded evaluation moves on the servo (``seeded_moves`` with the schedule bench's seed).
        episode_s: length of each evaluation move (s).
        settle_s: servo time the PID is given to reach a move's start (s).
        target_limit_rad: evaluation starts and targets in [-limit, limit] (rad).
        min_move_rad: every evaluation move is at least this long (rad).
        rounds: at most this many calibrate → train → deploy → evaluate rounds.
        fit_evaluations: candidate plants per calibration.
        retune_evaluations: gain sets the tuner tries when it retunes the base law on the calibrated twin
            (``schedule.ScheduleConfig.retune_evaluations``); 0: schedule the cached law.
        max_servo_s: servo-time budget (s), moves and settling included; 0: no limit.
        max_time_s: wall-time budget (s); 0: no limit.
        stop_on_target: stop once a policy beats the classical start on the servo.
    """

    objective: str = "speed"
    profile: str = "mm_v3"
    load: str = "pendulum"
    seed: int = 0
    generations: int = parameter(30, "ES generations per round on the calibrated twin")
    eval_moves: int = parameter(
        10, "seeded evaluation moves on the servo for the classical start and each calibrated policy"
    )
    episode_s: float = 1.0
    settle_s: float = 0.5
    target_limit_rad: float = math.pi
    min_move_rad: float = 0.2
    rounds: int = parameter(3, "at most this many calibrate -> train -> deploy -> evaluate rounds")
    fit_evaluations: int = parameter(120, "candidate plants simulated per calibration")
    retune_evaluations: int = parameter(
        120, "gain sets tried when retuning the base law on the calibrated twin (0: schedule the cached law)"
    )
    max_servo_s: float = parameter(600.0, "servo-time budget of a goal, moves and settling included (s; 0: none)")
    max_time_s: float = 0.0
    stop_on_target: bool = True

    def validate(self) -> None:
        """Refuse a configuration that cannot run, naming the field (OnlineError)."""
        problems = []
        parse_objective(self.objective)
        if min(self.eval_moves, self.rounds, self.fit_evaluations, self.generations) < 1:
            problems.append("eval_moves, rounds, fit_evaluations and generations must be >= 1")
        if self.retune_evaluations < 0:
            problems.append("retune_evaluations must be >= 0 (0: schedule the cached law)")
        positive = {"episode_s": self.episode_s, "target_limit_rad": self.target_limit_rad}
        non_negative = {
            "settle_s": self.settle_s,
            "min_move_rad": self.min_move_rad,
            "max_servo_s": self.max_servo_s,
            "max_time_s": self.max_time_s,
        }
        problems += _range_problems(positive, non_negative)
        if self.min_move_rad >= self.target_limit_rad:
            problems.append(f"min_move_rad={self.min_move_rad} leaves no move in ±{self.target_limit_rad} rad")
        if problems:
            raise OnlineError("; ".join(problems))


@dataclass(frozen=True)
class PolicyRecord:
    """A deployed policy and how it did on the evaluation moves.

    Attributes:
        image: the signed policy image.
        metadata: the export's metadata (``paths``: its artifacts).
        policy_crc32: what the servo reports while it runs it.
        steps: transitions consumed when it was exported.
        metrics: its evaluation (``twin.summarize`` names; empty until evaluated).
    """

    image: bytes
    metadata: dict[str, Any]
    policy_crc32: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionProgress(Progress):
    """A progress report of an online session: :class:`mm_learning.goals.Progress`, and its own counts.

    The inherited fields: phase is one of :data:`PHASES`, steps the transitions consumed, steps_per_s counted since
    the session started, mean_reward per transition of the last exploration cycle (NaN before the first), and the
    baseline is the start policy's evaluation on the same moves.

    Attributes:
        gradient_steps: gradient steps so far.
        deploys: policies deployed so far (the start policy included).
    """

    gradient_steps: int
    deploys: int


@dataclass(frozen=True)
class RewardReport:
    """The rewards of one move, for plotting (``mm_msgs/Reward``).

    Attributes:
        first_tick: control tick of the move's first sample.
        samples: transitions averaged.
        reward: mean reward per transition.
        terms: mean weighted term per transition (they sum to ``reward``).
    """

    first_tick: int
    samples: int
    reward: float
    terms: dict[str, float]


@dataclass(frozen=True)
class SessionResult:
    """How a session ended.

    Attributes:
        stop_reason: "target", "steps", "time" or "cancelled".
        steps: transitions consumed.
        gradient_steps: gradient steps run.
        deploys: policies deployed (the start policy included).
        start: the start policy with its evaluation (the baseline).
        best: the best evaluated policy (the start policy if nothing beat it).
        history: (transitions, mean return) of every evaluation.
        elapsed_s: wall time (s).
        servo_time_s: servo time of all consumed transitions (s; summed over the servos of a fleet).
        train_time_s: wall time spent in gradient steps (s).
    """

    stop_reason: str
    steps: int
    gradient_steps: int
    deploys: int
    start: PolicyRecord
    best: PolicyRecord
    history: list[tuple[int, float]]
    elapsed_s: float
    servo_time_s: float
    train_time_s: float

    @property
    def transitions_per_s(self) -> float:
        """Transitions consumed per second of wall time."""
        return self.steps / self.elapsed_s if self.elapsed_s > 0.0 else 0.0

    @property
    def gradient_steps_per_s(self) -> float:
        """Gradient steps per second of wall time spent training."""
        return self.gradient_steps / self.train_time_s if self.train_time_s > 0.0 else 0.0


def evaluation_episodes(moves: Sequence[Any], settle_s: float) -> list[Episode]:
    """`Episode`s of seeded evaluation moves (``mm_sim.evaluate.seeded_moves``), exploration off.

    Each starts from rest at its start, where the PID is given ``settle_s`` (s) to bring the load.
    """
    return [Episode(m.target_rad, m.duration_s, m.start_rad, settle_s=settle_s) for m in moves]


def is_whole(columns: TransitionColumns, episode: Episode) -> bool:
    """Whether a move's transitions arrived whole.

    A return summed over a move cut short by lost transitions would compare policies on different moves.
    """
    return columns.count >= round(episode.duration_s / columns.dt_s)


MOVE_ATTEMPTS = 3
"""Runs of an evaluation move whose transitions come back incomplete, before the session gives up."""


def move_attempts(link: ServoLink, episode: Episode) -> list[TransitionColumns]:
    """Every run of an evaluation move: until its transitions arrive whole, at most ``MOVE_ATTEMPTS`` runs."""
    runs = [link.run_episode(episode)]
    while not is_whole(runs[-1], episode) and len(runs) < MOVE_ATTEMPTS:
        runs.append(link.run_episode(episode))
    return runs


def whole_move(attempts: Sequence[TransitionColumns], episode: Episode) -> TransitionColumns:
    """The last of a move's `attempts` (:func:`move_attempts`); OnlineError when it too came back incomplete."""
    if not is_whole(attempts[-1], episode):
        msg = (
            f"the evaluation move to {episode.target_rad:.3f} rad came back incomplete {len(attempts)} times (the "
            f"last had {attempts[-1].count} samples for {episode.duration_s} s): transitions are being lost between "
            "the servo and the learner"
        )
        raise OnlineError(msg)
    return attempts[-1]


def servo_evaluation(terms: Mapping[str, float], moves: list[TransitionColumns], starts: list[float]) -> Evaluation:
    """Evaluation moves measured by the servo as an ``mm_sim.evaluate.Evaluation``.

    The return of a move is the sum of the rewards (term weights `terms`) of its transitions; its metrics are
    ``mm_contract.metrics.step_metrics`` of its samples, from ``starts`` (the move's commanded start, rad).
    """
    metrics, returns, described = [], [], []
    for columns, start in zip(moves, starts, strict=True):
        response = Response(
            time_s=np.arange(columns.count, dtype=np.float64) * columns.dt_s,
            position_rad=columns.position_rad,
            target_rad=columns.target_rad,
            current_a=columns.current_a,
            power_w=columns.power_w,
            action=columns.actions.astype(np.float64),
        )
        metrics.append(step_metrics(response, start_rad=start, tolerance_rad=DEFAULT_TOLERANCE_RAD))
        returns.append(float(np.sum(reward_terms(terms, columns)[0])))
        described.append(Move(start, float(columns.target_rad[0]), columns.count * columns.dt_s))
    return Evaluation(described, metrics, returns)
