"""Train (tiny) -> export -> TFLite Micro round trip for PPO and SAC, and the refusals of the acceptance checks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import keras
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.policy_image import ModelType, parse_image
from mm_contract.signing import verify_image
from mm_contract.tflm import Scheme, TflmPolicy
from mm_learning.acceptance import (
    DEFAULT_SCHEME,
    Budget,
    ClosedLoopReport,
    EpisodeResult,
    Thresholds,
    action_error,
    check_budget,
    check_closed_loop,
    check_ops,
    closed_loop,
    rollout_observations,
    run_episode,
    settled_in_time,
)
from mm_learning.actor import actor_from_sb3
from mm_learning.errors import ExportError, PolicyRejected, RejectionCause
from mm_learning.export import ClosedLoopSetup, ExportResult, export_policy
from mm_learning.tflite_convert import convert, to_keras
from mm_testing.toy_servo import ToyServoEnv, pd_law
from stable_baselines3.common.base_class import BaseAlgorithm
from tflite_micro.python.tflite_micro.runtime import schema_fb

CHECK_SEEDS = range(6)


def _export(model: BaseAlgorithm, key: ec.EllipticCurvePrivateKey, out: Path, scheme: Scheme) -> ExportResult:
    actor = actor_from_sb3(model)
    return export_policy(
        actor,
        scales=ToyServoEnv().scales,
        representative_obs=rollout_observations(ToyServoEnv, actor, range(100, 106)),
        held_out_obs=rollout_observations(ToyServoEnv, actor, range(200, 203)),
        closed_loop_setup=ClosedLoopSetup(ToyServoEnv, CHECK_SEEDS),
        private_key=key,
        out_dir=out,
        name=f"{type(model).__name__.lower()}_{scheme.value}",
        scheme=scheme,
        objective="accuracy",
        training_steps=int(model.num_timesteps),
        metrics={"final_error_rad": 1e-4},
    )


@pytest.fixture(scope="module")
def exports(
    trained_models: dict[str, BaseAlgorithm], signing_key: ec.EllipticCurvePrivateKey, tmp_path_factory
) -> dict[str, ExportResult]:
    out = tmp_path_factory.mktemp("export")
    return {algo: _export(trained_models[algo], signing_key, out, DEFAULT_SCHEME) for algo in ("PPO", "SAC")}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["PPO", "SAC"])
def test_float_actor_is_what_sb3_predicts(trained_models, algorithm) -> None:
    model = trained_models[algorithm]
    obs = rollout_observations(ToyServoEnv, actor_from_sb3(model), [7])
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(actor_from_sb3(model)(obs), expected, atol=1e-5)
    np.testing.assert_allclose(to_keras(actor_from_sb3(model))(obs).numpy(), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["PPO", "SAC"])
def test_export_round_trip_runs_in_tflite_micro_like_the_float_policy(
    exports, trained_models, signing_key, algorithm
) -> None:
    result = exports[algorithm]
    actor = actor_from_sb3(trained_models[algorithm])
    model = result.paths["tflite"].read_bytes()
    # The written .tflite runs in TFLite Micro and acts like the float actor on fresh observations.
    obs = rollout_observations(ToyServoEnv, actor, [300])
    quantized = TflmPolicy(model)
    assert np.max(np.abs(quantized(obs) - actor(obs))) < Thresholds().action_max_abs
    # The image carries that model, the header the firmware needs, and a valid signature.
    image = parse_image(result.paths["mmpl"].read_bytes())
    assert image.model == model
    assert image.header.model_type == DEFAULT_SCHEME.model_type
    assert image.header.arena_bytes == result.metadata["arena_bytes"] <= Budget().arena_bytes
    assert image.header.scales.fine_gain_per_rad == ToyServoEnv().scales.fine_gain_per_rad
    verify_image(signing_key.public_key(), image.raw)
    # Metadata records what was accepted and why.
    md = json.loads(result.paths["json"].read_text())
    assert md["algorithm"] == algorithm
    assert md["hashes"]["policy_crc32"] == image.policy_crc32
    loop = md["acceptance"]["closed_loop"]
    assert loop["return_rel_diff"] <= 0.01
    if loop["float_settled_moves"]:
        steady_state_limit = loop["float_steady_state_error_rad"] + Thresholds().steady_state_error_rad
        assert loop["quantized_steady_state_error_rad"] <= steady_state_limit
    assert set(md["ops"]) <= {"FULLY_CONNECTED", "TANH"}
    # The C header holds exactly the model bytes.
    header_text = result.paths["h"].read_text()
    assert "__attribute__((aligned(16)))" in header_text
    hex_bytes = header_text.split("{", 1)[1].split("}", 1)[0].replace(",", " ").split()
    assert bytes(int(b, 16) for b in hex_bytes) == model


@pytest.fixture(scope="module")
def ppo_int8(trained_models) -> tuple[TflmPolicy, np.ndarray]:
    """The PPO actor converted to full int8 (checked to run in TFLite Micro), and held-out observations."""
    actor = actor_from_sb3(trained_models["PPO"])
    model = convert(to_keras(actor), rollout_observations(ToyServoEnv, actor, range(100, 106)), Scheme.INT8)
    assert check_ops(model, Scheme.INT8) == ["FULLY_CONNECTED", "TANH", "FULLY_CONNECTED", "TANH", "FULLY_CONNECTED"]
    return TflmPolicy(model), rollout_observations(ToyServoEnv, actor, range(200, 203))


@pytest.mark.slow
def test_int16x8_is_closer_to_float_than_int8(exports, trained_models, ppo_int8) -> None:
    int8_policy, held_out = ppo_int8
    int8_rmse = action_error(actor_from_sb3(trained_models["PPO"]), int8_policy, held_out).rmse
    assert exports["PPO"].metadata["acceptance"]["action_error"]["rmse"] < int8_rmse / 3
    assert exports["PPO"].metadata["model_type"] == ModelType.INT16X8


@pytest.mark.slow
def test_a_model_containing_exp_is_refused() -> None:
    # A stochastic head's exp(log_std) is exactly what must never reach the servo.
    inputs = keras.Input(shape=(8,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    outputs = keras.ops.exp(keras.layers.Dense(1)(hidden))
    rows = np.random.default_rng(0).uniform(-1, 1, (256, 8))
    model = convert(keras.Model(inputs, outputs), rows, Scheme.INT8)
    with pytest.raises(PolicyRejected, match="EXP") as refused:
        check_ops(model, Scheme.INT8)
    assert refused.value.cause is RejectionCause.UNSUPPORTED_OP


def test_too_few_representative_observations_are_refused() -> None:
    with pytest.raises(ExportError, match="at least 200"):
        convert(None, np.zeros((3, 8)), Scheme.INT8)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model_bytes", "arena_bytes", "cause"),
    [(12 * 1024 + 1, 1024, RejectionCause.MODEL_TOO_LARGE), (1024, 8 * 1024 + 1, RejectionCause.ARENA_TOO_LARGE)],
)
def test_budget_refusals_name_the_cause(model_bytes, arena_bytes, cause) -> None:
    with pytest.raises(PolicyRejected, match=cause.value) as refused:
        check_budget(model_bytes, arena_bytes, Budget())
    assert refused.value.cause is cause
    check_budget(12 * 1024, 8 * 1024, Budget())


def test_closed_loop_check_refuses_a_policy_that_drives_differently() -> None:
    # A controller with a small bias settles off target: same seeded moves, visibly different outcome.
    def float_policy(obs):
        return pd_law(obs)[0]

    def biased(obs):
        return pd_law(obs)[0] + 0.02

    report = closed_loop(ToyServoEnv, float_policy, biased, range(3))
    assert report.settled_moves == (0, 1, 2)
    with pytest.raises(PolicyRejected, match="steady-state error") as refused:
        check_closed_loop(report, Thresholds())
    assert refused.value.cause is RejectionCause.CLOSED_LOOP
    check_closed_loop(closed_loop(ToyServoEnv, float_policy, float_policy, range(3)), Thresholds())


def _episode(steady_state_error_rad: float, settled_in_time: bool, episode_return: float = -1.0) -> EpisodeResult:
    return EpisodeResult(0, episode_return, steady_state_error_rad, settled_in_time, 100)


def test_closed_loop_return_limit_is_relative_to_float() -> None:
    def episodes(ret: float) -> tuple[EpisodeResult, ...]:
        return (_episode(0.0, True, ret),)

    check_closed_loop(ClosedLoopReport(episodes(-100.0), episodes(-100.9)), Thresholds())
    with pytest.raises(PolicyRejected, match=r"1\.10 % apart"):
        check_closed_loop(ClosedLoopReport(episodes(-100.0), episodes(-101.1)), Thresholds())


def test_steady_state_errors_count_on_the_moves_the_float_policy_settled() -> None:
    count = Thresholds().steady_state_error_rad
    float_episodes = (_episode(0.0, True), _episode(0.05, False))
    # Where the float policy has not settled, the end of the move is where an unsettled trajectory happens to
    # be: the quantised one ending elsewhere there is judged by the return alone.
    elsewhere = ClosedLoopReport(float_episodes, (_episode(0.0, True), _episode(0.05 + 10 * count, False)))
    assert elsewhere.settled_moves == (0,)
    check_closed_loop(elsewhere, Thresholds())
    assert elsewhere.summary()["float_settled_moves"] == 1
    # A quantised policy that misses a move the float policy settled is refused, settled or not.
    for quantised in (_episode(3 * count, True), _episode(3 * count, False)):
        with pytest.raises(PolicyRejected, match="on the 1 moves the float policy settled") as refused:
            check_closed_loop(ClosedLoopReport(float_episodes, (quantised, float_episodes[1])), Thresholds())
        assert refused.value.cause is RejectionCause.CLOSED_LOOP
    # With no move settled by the float policy the return alone decides, and the summary says so.
    unsettled = ClosedLoopReport((_episode(0.05, False),), (_episode(0.5, False),))
    check_closed_loop(unsettled, Thresholds())
    assert unsettled.summary()["float_settled_moves"] == 0 and "float_steady_state_error_rad" not in unsettled.summary()


def test_a_move_counts_when_the_float_policy_settled_it_by_nine_tenths() -> None:
    def float_policy(obs):
        return pd_law(obs)[0]

    # pd_law settles the toy's moves within a few hundred ticks: a 1000-tick move counts, a 40-tick one does not.
    long = run_episode(ToyServoEnv(episode_steps=1000), float_policy, 0)
    assert long.steps == 1000 and long.settled_in_time
    short = run_episode(ToyServoEnv(episode_steps=40), float_policy, 0)
    assert not short.settled_in_time and short.steady_state_error_rad > Thresholds().steady_state_error_rad
    assert settled_in_time(0.09, 0.1) and not settled_in_time(0.091, 0.1) and not settled_in_time(None, 0.1)


def test_closed_loop_reads_the_error_from_the_twin() -> None:
    # The check runs against MuscleMemoryServo-v0 in `mm export`: its info must carry target and position.
    mm_sim = pytest.importorskip("mm_sim", reason="mm_sim not on the path")

    def make_env():
        return gym.make(mm_sim.ENV_ID, episode_s=0.02)

    def idle(obs):
        return np.zeros(1, dtype=np.float32)

    report = closed_loop(make_env, idle, idle, [3])
    assert report.float_episodes == report.quantized_episodes
    episode = report.float_episodes[0]
    assert episode.steps == 20 and episode.steady_state_error_rad > 0.0 and not episode.settled_in_time
    assert report.settled_moves == ()


@pytest.mark.slow
@pytest.mark.parametrize("scheme", list(Scheme))
def test_stripped_model_is_smaller_aligned_and_computes_the_same(trained_models, scheme) -> None:
    actor = actor_from_sb3(trained_models["SAC"])
    calibration = rollout_observations(ToyServoEnv, actor, range(100, 103))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = convert(to_keras(actor), calibration, scheme, strip=False)
    assert not [w for w in caught if "Statistics for quantized inputs" in str(w.message)]
    stripped = convert(to_keras(actor), calibration, scheme)
    assert len(stripped) < len(full) - 500
    root = schema_fb.Model.GetRootAs(stripped, 0)
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength():
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0
    rows = np.random.default_rng(2).uniform(-1.2, 1.2, (2000, 8))
    before, after = TflmPolicy(full), TflmPolicy(stripped)
    np.testing.assert_array_equal(
        after.act_quantized(after.quantize_obs(rows)), before.act_quantized(before.quantize_obs(rows))
    )
