"""The trainer: objectives and presets, budgets, progress, cancel, checkpoints and resume after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mm_contract.objectives import parse_objective
from mm_learning.algorithms import ALGORITHMS, CLONE_SEED, build_model, clone_controller, load_preset
from mm_learning.checkpoints import latest_checkpoint
from mm_learning.errors import TrainingError
from mm_learning.goals import Progress
from mm_learning.trainer import TrainConfig, Trainer
from mm_learning.twin import TwinSpec, beats_target

from mm_learning import trainer as trainer_module

# Short moves keep each evaluation cheap; the budgets below are a few PPO rollouts.
TWIN = TwinSpec(profile="mm_v3", load="pendulum", objective=parse_objective("accuracy"), episode_s=0.3)


def _config(out_dir: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "out_dir": out_dir,
        "twin": TWIN,
        "algorithm": "ppo",
        "max_steps": 1024,
        "eval_every_steps": 512,
        "eval_moves": 2,
        "checkpoint_every_steps": 512,
        "hyperparameters": {"n_steps": 256, "batch_size": 128},
        "clone_baseline_episodes": 0,
        "tensorboard": False,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_has_a_preset_with_a_1khz_horizon(algorithm: str) -> None:
    preset = load_preset(algorithm)
    # At 1 kHz a horizon 1/(1-gamma) below ~100 steps (0.1 s) cannot see a move settle.
    assert 1.0 / (1.0 - preset["hyperparameters"]["gamma"]) >= 100


def test_unknown_algorithm_and_zero_budget_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="unknown algorithm 'dqn'"):
        Trainer(_config(tmp_path, algorithm="dqn"))
    with pytest.raises(TrainingError, match="budget is zero"):
        Trainer(_config(tmp_path, max_steps=0, max_time_s=0.0))


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta"])
def test_a_device_the_trainer_cannot_use_is_refused(tmp_path: Path, device: str) -> None:
    with pytest.raises(TrainingError, match=f"device '{device}'"):
        Trainer(_config(tmp_path, device=device))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_is_refused_where_torch_sees_no_gpu(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="sees no CUDA GPU"):
        Trainer(_config(tmp_path, device="cuda"))


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_networks_live_on_the_device_asked_for(device: str) -> None:
    env = TWIN.make_env(randomize=False)
    model = build_model("sac", env, seed=0, device=device)
    env.close()
    expected = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    assert {parameter.device.type for parameter in model.policy.parameters()} == {expected}


def test_target_rules_follow_the_objective() -> None:
    pid = {
        "mean_settling_time_s": 0.5,
        "settled_fraction": 1.0,
        "mean_steady_state_error_rad": 1e-3,
        "mean_rms_error_rad": 0.5,
        "mean_energy_j": 1.0,
        "mean_return": -10.0,
    }
    fast = pid | {"mean_settling_time_s": 0.3}
    assert beats_target(parse_objective("speed"), fast, pid)
    assert not beats_target(parse_objective("speed"), pid | {"mean_settling_time_s": 0.4}, pid)  # only 20 % faster
    assert not beats_target(parse_objective("speed"), fast | {"settled_fraction": 0.9}, pid)
    assert beats_target(parse_objective("energy"), pid | {"mean_energy_j": 0.7}, pid)
    assert not beats_target(parse_objective("energy"), pid | {"mean_energy_j": 0.7, "mean_settling_time_s": 0.6}, pid)
    assert beats_target(
        parse_objective("accuracy"), pid | {"mean_steady_state_error_rad": 5e-4, "mean_rms_error_rad": 0.4}, pid
    )
    assert not beats_target(parse_objective("accuracy"), pid | {"mean_steady_state_error_rad": 5e-4}, pid)
    assert beats_target(parse_objective("speed:0.5,energy:0.5"), pid | {"mean_return": -9.0}, pid)


def test_ppo_run_reaches_its_budget_with_progress_evaluation_and_checkpoint(tmp_path: Path) -> None:
    reports: list[Progress] = []
    result = Trainer(_config(tmp_path, tensorboard=True), on_progress=reports.append).run()
    assert result.steps == 1024 and result.stop_reason == "steps"
    assert {"mean_steady_state_error_rad", "settled_fraction", "mean_return"} <= set(result.eval_metrics)
    assert set(result.baseline_metrics) == set(result.eval_metrics)
    evaluations = [r for r in reports if r.phase == "evaluating" and r.eval_metrics]
    assert [r.steps for r in evaluations][:2] == [512, 1024]
    assert all(r.steps_per_s > 0 for r in evaluations)
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and json.loads((checkpoint / "state.json").read_text())["steps"] == 1024
    assert (checkpoint / "reward_normalizer.pkl").is_file(), "the PPO preset's reward normalisation is not saved"
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*")), "no TensorBoard event file written"


def test_cancel_stops_with_a_checkpoint_and_the_run_resumes_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    steps_seen: list[int] = []
    config = _config(tmp_path / "run", max_steps=2048, eval_every_steps=0)
    first = Trainer(
        config, on_progress=lambda p: steps_seen.append(p.steps), should_cancel=lambda: _past(tmp_path / "run", 512)
    ).run()
    assert first.stop_reason == "cancelled"
    assert 512 <= first.steps < 2048
    assert json.loads((first.checkpoint_dir / "state.json").read_text())["steps"] == first.steps
    second = Trainer(config).run()
    # PPO finishes the rollout in progress (256 steps x 2 envs) when the budget runs out.
    assert 2048 <= second.steps < 2048 + 512 and second.stop_reason == "steps"
    assert json.loads((second.checkpoint_dir / "state.json").read_text())["resumes"] == 1
    assert not list(temp.glob("SB3-*")), "a run without TensorBoard left SB3's log folder in the temp directory"


def _past(out_dir: Path, steps: int) -> bool:
    """True once the run in `out_dir` has a checkpoint at or after `steps`."""
    checkpoint = latest_checkpoint(out_dir)
    return checkpoint is not None and json.loads((checkpoint / "state.json").read_text())["steps"] >= steps


def test_time_budget_stops_the_run(tmp_path: Path) -> None:
    result = Trainer(_config(tmp_path, max_steps=0, max_time_s=2.0, eval_every_steps=0)).run()
    assert result.stop_reason == "time"
    assert 0 < result.steps < 10**6 and result.elapsed_s >= 2.0


def test_run_stops_early_when_the_target_is_beaten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module, "beats_target", lambda *_args: True)
    result = Trainer(_config(tmp_path, max_steps=100_000)).run()
    assert result.stop_reason == "target" and result.target_beaten
    assert result.steps == 512  # the first evaluation


def test_resume_refuses_another_objective(tmp_path: Path) -> None:
    Trainer(_config(tmp_path, max_steps=256, eval_every_steps=0)).run()
    other = _config(
        tmp_path, twin=TwinSpec(profile="mm_v3", load="pendulum", objective=parse_objective("speed"), episode_s=0.3)
    )
    with pytest.raises(TrainingError, match="holds a objective='accuracy' run"):
        Trainer(other).run()


def test_a_half_written_checkpoint_is_never_the_latest(tmp_path: Path) -> None:
    first = Trainer(_config(tmp_path, max_steps=256, eval_every_steps=0)).run()
    # What a kill in the middle of the next checkpoint leaves behind: a temporary directory with some files.
    partial = tmp_path / "checkpoints" / ".tmp-killed"
    partial.mkdir()
    (partial / "model.zip").write_bytes(b"truncated")
    assert latest_checkpoint(tmp_path) == first.checkpoint_dir
    resumed = Trainer(_config(tmp_path, max_steps=512, eval_every_steps=0)).run()
    assert resumed.steps == 512


@pytest.mark.slow
def test_sac_resume_keeps_the_replay_buffer(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        algorithm="sac",
        max_steps=300,
        eval_every_steps=0,
        checkpoint_every_steps=10**6,
        hyperparameters={"learning_starts": 100, "buffer_size": 5000},
    )
    first = Trainer(config).run()
    assert (first.checkpoint_dir / "replay_buffer.pkl").is_file()
    # Two envs: the buffer holds one row per vectorised step.
    assert first.model.replay_buffer.size() == 150  # type: ignore[attr-defined]
    resumed = Trainer(
        _config(
            tmp_path,
            algorithm="sac",
            max_steps=400,
            eval_every_steps=0,
            hyperparameters={"learning_starts": 100, "buffer_size": 5000},
        )
    ).run()
    assert resumed.model.replay_buffer.size() == 200  # type: ignore[attr-defined]


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mm_contract.objectives import parse_objective
    from mm_learning.trainer import Trainer, TrainConfig
    from mm_learning.twin import TwinSpec
    twin = TwinSpec(episode_s=0.3, objective=parse_objective("accuracy"))
    Trainer(TrainConfig(out_dir=Path(sys.argv[1]), twin=twin, max_steps=100_000, eval_every_steps=0,
                        checkpoint_every_steps=512, tensorboard=False, clone_baseline_episodes=0,
                        hyperparameters={"n_steps": 256, "batch_size": 128})).run()
    """
)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint_and_continues_the_step_count(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 120.0
        # Kill it right after its second checkpoint: the third may be half written at that moment.
        while not _past(tmp_path, 1024):
            assert child.poll() is None, "the training process died on its own"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None
    killed_at = json.loads((checkpoint / "state.json").read_text())["steps"]
    reports: list[Progress] = []
    resumed = Trainer(
        _config(
            tmp_path,
            max_steps=killed_at + 512,
            eval_every_steps=0,
            twin=TwinSpec(episode_s=0.3, objective=parse_objective("accuracy")),
        ),
        on_progress=reports.append,
    )
    result = resumed.run()
    assert reports[0].steps == killed_at >= 1024
    assert killed_at + 512 <= result.steps < killed_at + 1024


@pytest.mark.slow
def test_cloning_the_pid_gives_a_policy_close_to_it_before_any_rl(tmp_path: Path) -> None:
    twin = TwinSpec(profile="mm_v3", load="inertia_disk", objective=parse_objective("accuracy"), episode_s=0.5)
    reports: list[Progress] = []
    config = _config(tmp_path, twin=twin, max_steps=512, eval_moves=5, clone_baseline_episodes=10)
    result = Trainer(config, on_progress=reports.append).run()
    assert "cloning" in [r.phase for r in reports]
    from_scratch = Trainer(_config(tmp_path / "scratch", twin=twin, max_steps=512, eval_moves=5)).run()
    pid = result.baseline_metrics["mean_return"]
    # Returns are negative (accumulated error): the clone is within 25 % of the PID, the random policy is not.
    assert result.eval_metrics["mean_return"] >= 1.25 * pid
    assert from_scratch.eval_metrics["mean_return"] < 1.25 * pid


@pytest.mark.slow
def test_the_clone_keeps_its_weights_on_the_int8_grid_the_export_rounds_to() -> None:
    # The converter stores each dense layer's weights as int8 with one scale per output row (max |w| / 127):
    # a clone fitted on that grid is the network the export checks, not one its rounding has moved.
    twin = TwinSpec(profile="mm_v3", load="pendulum", objective=parse_objective("accuracy"), episode_s=0.3)
    env = twin.make_env(randomize=False)
    model = build_model("ppo", env, seed=0)
    mse = clone_controller(model, env, twin.make_baseline(env, twin.moves(2)), episodes=2, seed=CLONE_SEED)
    env.close()
    layers = [m for m in model.policy.mlp_extractor.policy_net.modules() if isinstance(m, torch.nn.Linear)]
    layers.append(model.policy.action_net)
    for layer in layers:
        assert not hasattr(layer, "parametrizations")  # a plain Linear again, as SB3 saves and trains it
        weight = layer.weight.detach().double()
        steps = weight / (weight.abs().amax(dim=1, keepdim=True) / 127.0)
        assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert mse < 0.05


def test_the_best_evaluated_model_is_kept_when_training_makes_the_policy_worse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_evaluate = trainer_module.evaluate_moves
    returns = iter([-1.0, -2.0, -3.0])  # the PID's, then the policy's first evaluation, then a worse one

    def worsening(env: object, controller: object, moves: list[object]) -> dict[str, float]:
        return real_evaluate(env, controller, moves) | {"mean_return": next(returns)}  # type: ignore[arg-type]

    monkeypatch.setattr(trainer_module, "evaluate_moves", worsening)
    result = Trainer(_config(tmp_path, max_steps=1024, stop_on_target=False)).run()
    assert result.steps == 1024 and result.best_steps == 512
    assert result.best_metrics["mean_return"] == -2.0
    assert ALGORITHMS["ppo"].load(result.best_model_path).num_timesteps == 512
