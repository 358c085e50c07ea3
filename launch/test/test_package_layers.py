"""The workspace's packages stand in layers and no package imports one above it or beside it.

Layers, bottom to top (docs/architecture.md draws them):

0. mm_msgs (interfaces), mm_firmware_core (the C core and its binding) and mm_testing (the tests' shared helpers,
   which import no workspace package so that every package can test_depend on it);
1. mm_contract: the servo contract in Python (profiles, description, observation, objectives, metrics, policy
   image, signing, registry, TFLite Micro runtime), ROS-free;
2. mm_ros: the ROS glue every node shares;
3. mm_sim: the MuJoCo twin and the virtual servo;
4. mm_learning and mm_driver, side by side (neither imports the other: a robot host runs the driver alone);
5. mm_bringup: the applications (launch, bringup, demo, sessions).

Every import counts, lazy ones inside functions too (the walker of test_package_dependencies), and every import
of a lower package must be declared in package.xml.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_package_dependencies import PACKAGES, declared, imported_modules

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"mm_msgs", "mm_firmware_core", "mm_testing"}),
    frozenset({"mm_contract"}),
    frozenset({"mm_ros"}),
    frozenset({"mm_sim"}),
    frozenset({"mm_learning", "mm_driver"}),
    frozenset({"mm_bringup"}),
)
LEVEL = {package: level for level, layer in enumerate(LAYERS) for package in layer}


def upward_edges(package: str, modules: dict[str, set[str]]) -> dict[str, list[str]]:
    """The workspace packages `package` imports that are not in a lower layer -> the files importing them."""
    return {
        other: sorted(files)
        for other, files in modules.items()
        if other in LEVEL and other != package and LEVEL[other] >= LEVEL[package]
    }


def test_every_python_package_has_a_layer() -> None:
    """A new package must be given its place before it can import anything."""
    assert set(PACKAGES) <= set(LEVEL), f"give {sorted(set(PACKAGES) - set(LEVEL))} a layer in LAYERS"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_package_imports_one_above_or_beside_it(package: str) -> None:
    """An upward or sideways import fails with the package it reaches and the files that reach it."""
    package_xml, roots = PACKAGES[package]
    edges = upward_edges(package, imported_modules(roots))
    assert not edges, f"{package} (layer {LEVEL[package]}) imports packages at or above its layer: {edges}"
    below = {m for m in imported_modules(roots) if m in LEVEL and m != package}
    assert below <= declared(package_xml), f"{package_xml} does not declare {sorted(below - declared(package_xml))}"


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """A driver module that imports the learner (beside it) or the simulator (below it) is told apart."""
    (tmp_path / "m.py").write_text("import mm_contract\n\ndef f():\n    from mm_learning import trainer\n")
    assert upward_edges("mm_driver", imported_modules([tmp_path])) == {"mm_learning": ["m.py"]}
    (tmp_path / "m.py").write_text("from mm_sim import env\n")
    assert upward_edges("mm_driver", imported_modules([tmp_path])) == {}
    assert upward_edges("mm_contract", imported_modules([tmp_path])) == {"mm_sim": ["m.py"]}


def test_the_firmware_binding_imports_no_workspace_package() -> None:
    """mm_firmware_core (layer 0) stands on the C core alone."""
    spec = importlib.util.find_spec("mm_firmware_core")
    assert spec is not None and spec.origin is not None, "build the workspace (make build) first"
    modules = imported_modules([Path(spec.origin).resolve().parent])
    assert not upward_edges("mm_firmware_core", modules)
