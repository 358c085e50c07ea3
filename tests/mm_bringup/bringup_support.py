"""A fake install tree for the ROS-free bringup tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The parameter files the bringup passes, copied from the packages' sources into the fake install.
CONFIG_SOURCES = {
    "mm_sim": REPO / "src/mm_sim/config/virtual_servo.yaml",
    "mm_driver": REPO / "src/mm_driver/config/driver.yaml",
    "mm_learning": REPO / "src/mm_learning/config/learner.yaml",
    "mm_bringup": REPO / "launch/config/bringup.yaml",
}


class FakeInstall:
    """An install tree in tmp_path: `<root>/<package>/share/<package>/...` and `<root>/<package>/lib/<package>/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.packages: set[str] = set()

    def add(self, package: str, *executables: str) -> None:
        """Install `package` with its config file (if it has one) and executable scripts."""
        share = self.share(package)
        (share / "config").mkdir(parents=True, exist_ok=True)
        if package in CONFIG_SOURCES:
            shutil.copy(CONFIG_SOURCES[package], share / "config")
        lib = self.root / package / "lib" / package
        lib.mkdir(parents=True, exist_ok=True)
        for executable in executables:
            script = lib / executable
            script.write_text("#!/bin/sh\n", encoding="utf-8")
            script.chmod(0o755)
        self.packages.add(package)

    def share(self, package: str) -> Path:
        return self.root / package / "share" / package

    def prefix(self, package: str) -> Path:
        from mm_bringup.errors import BringupError

        if package not in self.packages:
            raise BringupError(f"package {package!r} is not installed")
        return self.root / package

    def installed(self, package: str) -> bool:
        return package in self.packages
