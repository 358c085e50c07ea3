"""The guard of POLICY-mode moves (servo contract section 4), through the binding and the virtual servo: the core
hands a move to the classical controller once its error or current leaves the envelope, so a runaway policy ends
near its target instead of spinning the load away, while the tuned classical PTOS never trips the default guard.
The cmocka test_policy checks the envelope, the fallbacks and the re-arming tick by tick.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.constants import SampleFlag
from mm_testing.fw_support import REPO, image, kconfig_default, public_key_bytes, require

FLAG_GUARD = SampleFlag.GUARD
FLAG_POLICY = SampleFlag.POLICY
MOVES = 30


def test_the_esp32_defaults_are_the_cores() -> None:
    """The ESP32 app sets the guard (and the policy decimation) from Kconfig: its defaults equal the core's."""
    import mm_firmware_core as fw

    cfg = fw.config_default()
    assert kconfig_default("MM_GUARD_ERROR_MRAD") == round(cfg.guard_error_rad * 1000)
    assert kconfig_default("MM_GUARD_SATURATION_MS") == round(cfg.guard_saturation_s * 1000)
    assert kconfig_default("MM_POLICY_DECIMATION") == cfg.policy_decimation
    assert cfg.guard_error_rad > 0.0 and cfg.guard_saturation_s > 0.0
    esp32_main = (REPO / "firmware" / "esp32" / "main" / "main.c").read_text()
    assert "cfg.guard_error_rad = CONFIG_MM_GUARD_ERROR_MRAD / 1000.0f;" in esp32_main
    assert "cfg.guard_saturation_s = CONFIG_MM_GUARD_SATURATION_MS / 1000.0f;" in esp32_main


@pytest.mark.parametrize("field", ["guard_error_rad", "guard_saturation_s"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_margins_are_refused(field: str, value: float) -> None:
    import mm_firmware_core as fw

    with pytest.raises(fw.FirmwareCoreError):
        fw.ServoCore(**{field: value})


def _servo(key: ec.EllipticCurvePrivateKey, action: float, monkeypatch: pytest.MonkeyPatch, **config: Any) -> Any:
    """A virtual servo (mm_v3 + pendulum, the core's default guard unless `config` sets it) whose inference backend
    accepts any model and always outputs `action`.
    """
    virtual_servo = require("mm_sim.virtual_servo")
    servo = virtual_servo.VirtualServo(
        virtual_servo.VirtualServoConfig(public_key_hex=public_key_bytes(key).hex(), heartbeat_timeout_s=0.0, **config)
    )
    monkeypatch.setattr(servo.backend, "load", lambda *_: True)
    monkeypatch.setattr(servo.backend, "invoke", lambda _slot, _obs: action)
    return servo


def _scales() -> tuple[float, ...]:
    from mm_contract.observation import ObsScales
    from mm_contract.profiles import load_profile

    s = ObsScales.from_profile(load_profile("mm_v3"))
    return (s.pos_scale_rad, s.vel_scale_rad_s, s.fine_gain_per_rad, s.current_limit_a, s.velocity_filter_tau_s)


def _flags(servo: Any) -> list[int]:
    """The flags of the complete batches queued (pop them at least every 256 ticks: the ring holds 256 samples)."""
    return [flag for batch in servo.full_batches() for flag in batch.flags[: batch.count]]


def test_the_classical_ptos_never_trips_the_default_guard(
    signing_key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schedule image over the shipped speed-tuned PTOS whose policy outputs 0 (the classical law, bit for bit) on
    30 seeded moves: the speed PTOS saturates the current while it accelerates and brakes, for up to the length of a
    long move, inside the default envelope, so no tick is guarded and every sample is the policy's.
    """
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_contract.profiles import load_profile
    from mm_sim.baselines import tuned_gains
    from mm_sim.evaluate import seeded_moves

    g = tuned_gains(load_profile("mm_v3"), "pendulum", "speed", law="ptos")
    base = (g.kp_pos, g.v_max, g.kp_vel, g.ki_vel, g.gravity_ff_a, g.decel_rad_s2)
    servo = _servo(signing_key, 0.0, monkeypatch)
    img = image(signing_key, bytes(64), scales=_scales(), schedule_range=1.0, base_gains=base)
    assert servo.core.load_policy(img) == 0
    flags: list[int] = []
    largest_overshoot = 0.0
    longest_saturation = 0
    limit_a = _scales()[3]
    for move in seeded_moves(MOVES, seed=0):
        assert servo.command(fw.MODE_POSITION, move.start_rad) == 0
        servo.step(1500)
        _flags(servo)
        assert servo.command(fw.MODE_POLICY, move.target_rad, stream_transitions=True) == 0
        e0 = move.target_rad - move.start_rad
        saturated = 0
        for _ in range(round(move.duration_s / servo.dt_s)):
            servo.step(1)
            e = move.target_rad - servo.state().position_rad
            if e * e0 < 0.0:
                largest_overshoot = max(largest_overshoot, abs(e))
            saturated = saturated + 1 if abs(servo.state().current_cmd_a) >= limit_a else 0
            longest_saturation = max(longest_saturation, saturated)
            flags += _flags(servo)
        assert servo.command(fw.MODE_POSITION, move.target_rad) == 0  # stop streaming
        flags += _flags(servo)
    print(
        f"{MOVES} classical moves: largest overshoot {largest_overshoot:.3f} rad, longest saturation "
        f"{longest_saturation} ticks, {servo.core.guard_trips()} trips"
    )
    assert servo.core.guard_trips() == 0
    assert len(flags) > MOVES * 990 and servo.state().dropped_samples == 0
    assert not any(f & FLAG_GUARD for f in flags)
    assert all(f & FLAG_POLICY for f in flags)
    # the current envelope was exercised, not idle: saturated for more than a fifth of the guard's margin
    assert longest_saturation * servo.dt_s > 0.2 * fw.config_default().guard_saturation_s


@pytest.mark.parametrize("action", [1.0, -1.0], ids=["past-the-target", "away-from-the-target"])
def test_a_runaway_policy_is_stopped_near_its_target(
    signing_key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch, action: float
) -> None:
    """A full-current policy stuck at +-1 on the pendulum: with the guard off it spins the load hundreds of radians
    away; with the default guard the move trips once, the PID takes over (FLAG_GUARD, not FLAG_POLICY, on every
    later sample; no fault, still POLICY mode) and the load ends the move on its target.
    """
    import mm_firmware_core as fw

    target = 1.0
    ends = {}
    for guard in (True, False):
        off = {} if guard else {"guard_error_rad": 0.0, "guard_saturation_s": 0.0}
        servo = _servo(signing_key, action, monkeypatch, **off)
        assert servo.core.load_policy(image(signing_key, bytes(64), scales=_scales())) == 0
        assert servo.command(fw.MODE_POLICY, target, stream_transitions=True) == 0
        flags = []
        for _ in range(3000 // 24):
            servo.step(24)
            flags += _flags(servo)
        state = servo.state()
        ends[guard] = state.position_rad
        assert state.mode == fw.MODE_POLICY and state.fault_flags == 0
        if not guard:
            assert servo.core.guard_trips() == 0 and not any(f & FLAG_GUARD for f in flags)
            continue
        assert servo.core.guard_trips() == 1 and servo.state().dropped_samples == 0
        first = next(i for i, f in enumerate(flags) if f & FLAG_GUARD)
        assert first > 0 and all(f & FLAG_POLICY for f in flags[:first])
        assert all(f & FLAG_GUARD and not f & FLAG_POLICY for f in flags[first:])
    assert abs(ends[True] - target) < 0.05, ends
    assert abs(ends[False] - target) > 50.0, ends  # without the guard the load ran away
