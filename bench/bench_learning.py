"""Learning bench (issue 4): export part — float vs quantised (TFLite Micro) vs PID, sizes, arena, mismatches.

Export section (this file's current content): a [64, 64] tanh PPO actor driving the mm_sim twin is exported
in both integer schemes and compared, in the same run, with its float self and with the tuned PID on the same
seeded moves. Without ``--model`` the actor is fitted to the tuned PID by behaviour cloning (seconds instead
of minutes of RL, and a competent controller, which is what a fidelity comparison needs); with ``--model``
any trained SB3 model is benched. Also reported: model and arena bytes, TFLite Micro time per inference, and
how often desktop TFLite disagrees with TFLite Micro on 10,000 inputs (TFLite Micro is the reference).

Run: ``PYTHONPATH=src/mm_learning:src/mm_sim python bench/bench_learning.py [--model m.zip --algorithm PPO]``.
Prints a markdown table and the JSON of the run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from mm_contract.metrics import steady_state_error_rad
from mm_contract.tflm import Scheme, TflmPolicy, measure_arena_bytes, model_ops
from mm_learning.acceptance import ENCODER_COUNT_RAD, action_error, closed_loop, rollout_observations, run_episode
from mm_learning.actor import actor_from_sb3
from mm_learning.tflite_convert import convert, desktop_outputs, to_keras
from mm_sim.baselines import PidController, initial_gains, tuned_gains
from mm_sim.errors import MmSimError

import mm_sim

PROFILE, LOAD, OBJECTIVE = "mm_v3", "pendulum", "accuracy"
CALIBRATION_SEEDS, HELD_OUT_SEEDS = range(10_000, 10_010), range(20_000, 20_005)
MISMATCH_INPUTS = 10_000


def make_env() -> Any:
    return gym.make(mm_sim.ENV_ID, profile=PROFILE, load=LOAD, objective=OBJECTIVE)


def pid_controller() -> tuple[Any, str]:
    """The tuned PID (or, while mm_sim has no cached tuning for the case, its physics-based initial gains)."""
    twin = make_env().unwrapped
    try:
        return PidController(tuned_gains(twin.nominal_profile, LOAD, OBJECTIVE)), "tuned"
    except MmSimError:
        return PidController(initial_gains(twin.nominal_profile, twin.nominal_load)), "initial (untuned)"


def run_pid(seeds: range) -> list[tuple[float, float]]:
    """(return, steady-state error rad) of the tuned PID on the seeded moves."""
    pid, _ = pid_controller()
    env, results = make_env(), []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        pid.reset(env.unwrapped, info)
        total, errors, done = 0.0, [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(pid(obs, info))
            total, done = total + float(reward), terminated or truncated
            errors.append(info["target_rad"] - info["position_rad"])
        results.append((total, steady_state_error_rad(np.asarray(errors))))
    env.close()
    return results


def clone_pid(moves: int, epochs: int) -> Any:
    """A PPO [64, 64] tanh actor fitted to the tuned PID's actions on its own (noise-perturbed) moves."""
    pid, _ = pid_controller()
    env, obs_rows, actions = make_env(), [], []
    rng = np.random.default_rng(0)
    for seed in range(moves):
        obs, info = env.reset(seed=30_000 + seed)
        pid.reset(env.unwrapped, info)
        done = False
        while not done:
            action = pid(obs, info)
            obs_rows.append(obs)
            actions.append(action)
            # Perturb what is applied (not the label) so the clone also sees states off the PID's own path.
            applied = np.clip(action + rng.normal(0.0, 0.05, 1), -1, 1).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(applied)
            done = terminated or truncated
    model = stable_baselines3.PPO(
        "MlpPolicy", env, policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh}, seed=0
    )
    policy = model.policy
    net = torch.nn.Sequential(*policy.mlp_extractor.policy_net, policy.action_net, torch.nn.Hardtanh())
    x = torch.as_tensor(np.array(obs_rows))
    y = torch.as_tensor(np.array(actions))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(256):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    env.close()
    return model


def tflm_us_per_inference(policy: TflmPolicy, q_obs: np.ndarray) -> float:
    start = time.perf_counter()
    policy.act_quantized(q_obs)
    return (time.perf_counter() - start) / len(q_obs) * 1e6


def bench_scheme(actor: Any, scheme: Scheme, calibration: np.ndarray, held_out: np.ndarray, seeds: range) -> dict:
    model = convert(to_keras(actor), calibration, scheme)
    policy = TflmPolicy(model)
    uniform = np.random.default_rng(1).uniform(-1, 1, (MISMATCH_INPUTS, 8)).astype(np.float32)
    mismatch = {}
    for name, rows in (("uniform", uniform), ("rollout", held_out[:MISMATCH_INPUTS])):
        q = policy.quantize_obs(rows)
        micro, desktop = policy.act_quantized(q).astype(np.int64), desktop_outputs(model, q).astype(np.int64)
        diff = np.abs(micro - desktop)
        mismatch[name] = {"inputs": len(rows), "differ": int(np.count_nonzero(diff)), "max_lsb": int(diff.max())}
    loop = closed_loop(make_env, actor, policy, seeds)
    return {
        "scheme": scheme.value,
        "model_bytes": len(model),
        "arena_bytes": measure_arena_bytes(model),
        "ops": sorted(set(model_ops(model))),
        "tflm_us_per_inference": tflm_us_per_inference(policy, policy.quantize_obs(held_out[:2000])),
        "action_error": action_error(actor, policy, held_out).__dict__,
        "closed_loop": loop.summary(),
        "steady_state_error_rad": float(np.mean([e.steady_state_error_rad for e in loop.quantized_episodes])),
        # What check (c) compares: the excess on the moves the float policy settled in time.
        "steady_state_excess_counts": (loop.quantized_steady_state_error_rad - loop.float_steady_state_error_rad)
        / ENCODER_COUNT_RAD,
        "tflm_vs_desktop": mismatch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default=None, help="trained SB3 .zip (default: clone the tuned PID)")
    parser.add_argument("--algorithm", default="PPO")
    parser.add_argument("--moves", type=int, default=20, help="seeded moves of the closed-loop comparison")
    parser.add_argument("--clone-moves", type=int, default=40)
    parser.add_argument("--clone-epochs", type=int, default=30)
    args = parser.parse_args()

    start = time.perf_counter()
    if args.model:
        model = getattr(stable_baselines3, args.algorithm).load(args.model, device="cpu")
    else:
        model = clone_pid(args.clone_moves, args.clone_epochs)
    actor = actor_from_sb3(model)
    prepared_s = time.perf_counter() - start
    calibration = rollout_observations(make_env, actor, CALIBRATION_SEEDS)
    held_out = rollout_observations(make_env, actor, HELD_OUT_SEEDS)
    seeds = range(args.moves)
    pid = run_pid(seeds)
    pid_gains = pid_controller()[1]
    float_runs = [run_episode(make_env(), actor, s) for s in seeds]
    schemes = [bench_scheme(actor, scheme, calibration, held_out, seeds) for scheme in Scheme]
    result: dict[str, Any] = {
        "setup": {
            "profile": PROFILE,
            "load": LOAD,
            "objective": OBJECTIVE,
            "moves": args.moves,
            "policy": args.model or f"PPO [64,64] tanh cloned from the {pid_gains} PID ({args.clone_moves} moves)",
            "pid_gains": pid_gains,
            "prepare_s": prepared_s,
            "calibration_rows": len(calibration),
            "held_out_rows": len(held_out),
        },
        "pid": {
            "return": float(np.mean([r for r, _ in pid])),
            "steady_state_error_rad": float(np.mean([e for _, e in pid])),
        },
        "float": {
            "return": float(np.mean([r.episode_return for r in float_runs])),
            "steady_state_error_rad": float(np.mean([r.steady_state_error_rad for r in float_runs])),
            "settled_in_time": sum(r.settled_in_time for r in float_runs),
        },
        "schemes": schemes,
        "wall_s": time.perf_counter() - start,
    }
    print(f"\n## Export: float vs quantised (TFLite Micro) vs PID, {PROFILE}/{LOAD}/{OBJECTIVE}, {args.moves} moves\n")
    print(
        "| controller | mean return | mean steady-state error (mrad) | model B | arena B | us/inference | "
        "action RMSE | TFLM vs desktop differ (uniform / rollout), max LSB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| PID ({pid_gains}) | {result['pid']['return']:.4g} | {1e3 * result['pid']['steady_state_error_rad']:.3f} "
        "| - | - | - | - | - |"
    )
    print(
        f"| float actor | {result['float']['return']:.4g} | {1e3 * result['float']['steady_state_error_rad']:.3f} "
        "| - | - | - | - | - |"
    )
    for s in schemes:
        loop, mm = s["closed_loop"], s["tflm_vs_desktop"]
        print(
            f"| {s['scheme']} (TFLM) | {loop['quantized_return']:.4g} ({100 * loop['return_rel_diff']:.2f} %) | "
            f"{1e3 * s['steady_state_error_rad']:.3f} ({s['steady_state_excess_counts']:+.2f} counts on the "
            f"{loop['float_settled_moves']} moves float settled) | "
            f"{s['model_bytes']} | {s['arena_bytes']} | {s['tflm_us_per_inference']:.1f} | "
            f"{s['action_error']['rmse']:.4f} | {mm['uniform']['differ']} / {mm['rollout']['differ']}, "
            f"{max(mm['uniform']['max_lsb'], mm['rollout']['max_lsb'])} |"
        )
    print("\n```json\n" + json.dumps(result, indent=2) + "\n```")


if __name__ == "__main__":
    main()
