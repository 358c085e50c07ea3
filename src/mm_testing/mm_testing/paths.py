"""Where the workspace's sources are, for tests that read them (config files, firmware sources, tools)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
"""The repository root: src/mm_testing/mm_testing/paths.py, followed through colcon's --symlink-install links."""
