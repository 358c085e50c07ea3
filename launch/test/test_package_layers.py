"""The workspace's packages stand in layers (mm_testing.packages.LAYERS) and none imports one above or beside it.

Every import counts, lazy ones inside functions too, and every import of a lower package is declared in
package.xml. docs/architecture.md shows the graph as `python -m mm_testing.packages` prints it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mm_testing.packages import (
    LEVEL,
    PACKAGES,
    declared,
    graph_table,
    imported_modules,
    upward_edges,
    workspace_imports,
)
from mm_testing.paths import REPO


def test_every_python_package_has_a_layer() -> None:
    """A new package must be given its place before it can import anything."""
    assert set(PACKAGES) <= set(LEVEL), f"give {sorted(set(PACKAGES) - set(LEVEL))} a layer in LAYERS"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_package_imports_one_above_or_beside_it(package: str) -> None:
    """An upward or sideways import fails with the package it reaches and the files that reach it."""
    package_xml, roots = PACKAGES[package]
    edges = upward_edges(package, imported_modules(roots))
    assert not edges, f"{package} (layer {LEVEL[package]}) imports packages at or above its layer: {edges}"
    below = workspace_imports(package)
    assert below <= declared(package_xml), f"{package_xml} does not declare {sorted(below - declared(package_xml))}"


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """A driver module that imports the learner (beside it) or the simulator (below it) is told apart."""
    (tmp_path / "m.py").write_text("import mm_contract\n\ndef f():\n    from mm_learning import trainer\n")
    assert upward_edges("mm_driver", imported_modules([tmp_path])) == {"mm_learning": ["m.py"]}
    (tmp_path / "m.py").write_text("from mm_sim import env\n")
    assert upward_edges("mm_driver", imported_modules([tmp_path])) == {}
    assert upward_edges("mm_contract", imported_modules([tmp_path])) == {"mm_sim": ["m.py"]}


def test_the_architecture_doc_shows_the_package_graph_of_the_sources() -> None:
    """docs/architecture.md holds the table `python -m mm_testing.packages` prints from today's imports."""
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert graph_table() in doc, "the package graph changed: paste `python -m mm_testing.packages` into the doc"
