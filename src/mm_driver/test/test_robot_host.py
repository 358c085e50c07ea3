"""The driver runs on a robot host without the simulator or the learner: importing its nodes loads neither MuJoCo,
Gymnasium, torch, TensorFlow, nor the workspace packages that need them (README, "On a robot host")."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("mujoco", "gymnasium", "torch", "tensorflow", "keras", "stable_baselines3", "ray", "mm_sim", "mm_learning")
DRIVER_MODULES = ("mm_driver.driver_node", "mm_driver.can_transport", "mm_driver.ros_transport", "mm_driver.busload")


def loaded_after_importing(modules: tuple[str, ...]) -> list[str]:
    """The HEAVY modules a fresh interpreter has loaded after importing `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_driver_loads_no_simulator_or_learner() -> None:
    assert loaded_after_importing(DRIVER_MODULES) == []


def test_the_check_sees_a_heavy_import() -> None:
    """The same check on the virtual servo node finds MuJoCo: it would see the driver pulling it in."""
    assert "mujoco" in loaded_after_importing(("mm_sim.twin_node",))
