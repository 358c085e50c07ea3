"""The workspace's Python packages, their layers, and the imports between them, read from the sources with `ast`.

The layer rule (a package imports only packages in lower layers) is what launch/test/test_package_layers.py
enforces and what `python -m mm_testing.packages` prints for docs/architecture.md.
"""

from __future__ import annotations

import argparse
import ast
import xml.etree.ElementTree as ET
from pathlib import Path

from mm_testing.paths import REPO

PACKAGES: dict[str, tuple[Path, list[Path]]] = {
    "mm_contract": (REPO / "src/mm_contract/package.xml", [REPO / "src/mm_contract/mm_contract"]),
    "mm_ros": (REPO / "src/mm_ros/package.xml", [REPO / "src/mm_ros/mm_ros"]),
    "mm_testing": (REPO / "src/mm_testing/package.xml", [REPO / "src/mm_testing/mm_testing"]),
    "mm_sim": (REPO / "src/mm_sim/package.xml", [REPO / "src/mm_sim/mm_sim"]),
    "mm_learning": (REPO / "src/mm_learning/package.xml", [REPO / "src/mm_learning/mm_learning"]),
    "mm_driver": (REPO / "src/mm_driver/package.xml", [REPO / "src/mm_driver/mm_driver"]),
    "mm_bringup": (REPO / "launch/package.xml", [REPO / "launch/mm_bringup", REPO / "launch/launch"]),
    "mm_firmware_core": (REPO / "firmware/core/package.xml", [REPO / "firmware/core/python/mm_firmware_core"]),
}
"""Package name -> (its package.xml, its Python sources)."""

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("interfaces, the C core's binding, test helpers", frozenset({"mm_msgs", "mm_firmware_core", "mm_testing"})),
    ("the servo contract in Python (ROS-free)", frozenset({"mm_contract"})),
    ("the ROS glue every node shares", frozenset({"mm_ros"})),
    ("the MuJoCo twin and the virtual servo", frozenset({"mm_sim"})),
    ("the learner and the driver, side by side", frozenset({"mm_learning", "mm_driver"})),
    ("the applications: bringup, launch, demo", frozenset({"mm_bringup"})),
)
"""Bottom to top: (what the layer is, its packages)."""
LEVEL = {package: level for level, (_, layer) in enumerate(LAYERS) for package in layer}


def imported_modules(roots: list[Path]) -> dict[str, set[str]]:
    """Top-level modules imported by the .py files under `roots` (lazy imports too) -> the files importing them."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def declared(package_xml: Path) -> set[str]:
    """The run-time dependency keys of a package.xml."""
    root = ET.parse(package_xml).getroot()
    tags = ("depend", "exec_depend", "build_export_depend")
    return {e.text.strip() for tag in tags for e in root.iter(tag) if e.text}


def workspace_imports(package: str) -> set[str]:
    """The workspace packages `package` imports."""
    return {m for m in imported_modules(PACKAGES[package][1]) if m in LEVEL and m != package}


def upward_edges(package: str, modules: dict[str, set[str]]) -> dict[str, list[str]]:
    """The workspace packages in `modules` that are not in a layer below `package`'s -> the files importing them."""
    return {
        other: sorted(files)
        for other, files in modules.items()
        if other in LEVEL and other != package and LEVEL[other] >= LEVEL[package]
    }


def graph_table() -> str:
    """The package graph as a markdown table, top layer first: layer, package, the workspace packages it imports."""
    rows = ["| layer | package | imports (workspace packages) |", "|---|---|---|"]
    for level in reversed(range(len(LAYERS))):
        what, layer = LAYERS[level]
        for package in sorted(layer):
            imports = (
                ", ".join(sorted(workspace_imports(package), key=lambda p: (LEVEL[p], p)))
                if package in PACKAGES
                else ""
            )
            rows.append(f"| {level}: {what} | `{package}` | {imports or '—'} |")
    return "\n".join(rows)


def main() -> None:
    """Print the package graph table (docs/architecture.md holds the same; a test compares them)."""
    argparse.ArgumentParser(description=main.__doc__).parse_args()
    print(graph_table())


if __name__ == "__main__":
    main()
