"""Every third-party module a package imports is declared in its package.xml, so `rosdep install` gives a working
install.

Walks each Python package's sources with `ast` (every `import x` / `from x import ...`, lazy ones inside
functions too), drops the standard library and the package itself, maps each top-level module to its rosdep key
through `ROSDEP_KEYS` and checks the key is a `<depend>`, `<exec_depend>` or `<build_export_depend>` of that
package. A module missing from the table fails the test: add its key (from ros/rosdistro rosdep/python.yaml, or
rosdep/mm.yaml for keys that do not exist upstream) to both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from mm_testing.packages import PACKAGES, declared, imported_modules
from mm_testing.paths import REPO

# top-level module -> rosdep key. ROS packages are their own key; Python libraries use the distro key where
# rosdistro has one and the pip key otherwise.
ROSDEP_KEYS = {
    # ROS 2
    **{
        name: name
        for name in (
            "rclpy",
            "rcl_interfaces",
            "std_msgs",
            "std_srvs",
            "sensor_msgs",
            "diagnostic_msgs",
            "lifecycle_msgs",
            "action_msgs",
            "builtin_interfaces",
            "rosgraph_msgs",
            "ament_index_python",
            "launch",
            "launch_ros",
            "mm_msgs",
            "mm_contract",
            "mm_ros",
            "mm_testing",
            "mm_sim",
            "mm_driver",
            "mm_learning",
            "mm_bringup",
            "mm_firmware_core",
            "control_msgs",
            "trajectory_msgs",
        )
    },
    # distro packages (rosdistro rosdep/python.yaml)
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "can": "python3-can",
    "cryptography": "python3-cryptography",
    "torch": "python3-torch",
    "flatbuffers": "python3-flatbuffers",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "imageio": "python3-imageio",
    # pip keys that rosdistro defines
    "cantools": "python3-cantools-pip",
    "mujoco": "python3-mujoco-pip",
    "gymnasium": "python3-gymnasium-pip",
    "stable_baselines3": "python3-stable-baselines3-pip",
    "rosbags": "python3-rosbags-pip",
    # pip keys of our own (rosdep/mm.yaml)
    "isotp": "python3-can-isotp-pip",
    "mcap": "python3-mcap-pip",
    "tensorflow": "python3-tensorflow-pip",
    "keras": "python3-tensorflow-pip",  # Keras 3 is installed with tensorflow
    "tflite_micro": "python3-tflite-micro-pip",
    "ray": "python3-ray-pip",
    "pytest": "python3-pytest",
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_third_party_import_is_declared(package: str) -> None:
    """An import whose key is missing from package.xml is reported with the files that import it."""
    package_xml, roots = PACKAGES[package]
    modules = imported_modules(roots)
    third_party = {m: files for m, files in modules.items() if m not in sys.stdlib_module_names and m != package}
    unmapped = sorted(m for m in third_party if m not in ROSDEP_KEYS)
    assert not unmapped, f"{package} imports {unmapped}: add their rosdep keys to ROSDEP_KEYS and package.xml"
    keys = declared(package_xml)
    missing = {ROSDEP_KEYS[m]: sorted(files) for m, files in third_party.items() if ROSDEP_KEYS[m] not in keys}
    assert not missing, f"{package_xml.relative_to(REPO)} does not declare (key: importing files): {missing}"


def test_the_walker_sees_lazy_imports(tmp_path: Path) -> None:
    """Imports inside functions count (most heavy libraries here are imported lazily)."""
    (tmp_path / "m.py").write_text("import os\n\ndef f():\n    import torch.nn\n    from mujoco import viewer\n")
    assert set(imported_modules([tmp_path])) == {"os", "torch", "mujoco"}


def test_our_own_keys_are_defined_for_rosdep() -> None:
    """Every `-pip` key not in rosdistro is in rosdep/mm.yaml with a pip package for Ubuntu and Debian."""
    ours = yaml.safe_load((REPO / "rosdep/mm.yaml").read_text(encoding="utf-8"))
    for key in ("python3-can-isotp-pip", "python3-tensorflow-pip", "python3-tflite-micro-pip", "python3-ray-pip"):
        assert ours[key]["ubuntu"]["pip"]["packages"], key
        assert ours[key]["debian"]["pip"]["packages"], key
