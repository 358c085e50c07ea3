"""A fake install tree for the ROS-free bringup tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mm_testing.paths import REPO

# The parameter files the bringup passes, copied from the packages' sources into the fake install.
CONFIG_SOURCES = {
    "mm_sim": REPO / "src/mm_sim/config/virtual_servo.yaml",
    "mm_driver": REPO / "src/mm_driver/config/driver.yaml",
    "mm_learning": REPO / "src/mm_learning/config/learner.yaml",
    "mm_bringup": REPO / "launch/config/bringup.yaml",
}


class FakeInstall:
    """An ament install prefix in tmp_path (merged layout): `share/<package>/`, `lib/<package>/<executable>`
    and the ament index marker, so `AMENT_PREFIX_PATH=<root>` makes a child process find it too.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, package: str, *executables: str, script: str = "#!/bin/sh\n") -> None:
        """Install `package` with its config file (if it has one) and executables running `script`."""
        share = self.share(package)
        (share / "config").mkdir(parents=True, exist_ok=True)
        if package in CONFIG_SOURCES:
            shutil.copy(CONFIG_SOURCES[package], share / "config")
        index = self.root / "share/ament_index/resource_index/packages"
        index.mkdir(parents=True, exist_ok=True)
        (index / package).touch()
        lib = self.root / "lib" / package
        lib.mkdir(parents=True, exist_ok=True)
        for executable in executables:
            path = lib / executable
            path.write_text(script, encoding="utf-8")
            path.chmod(0o755)

    def share(self, package: str) -> Path:
        return self.root / "share" / package

    def installed(self, package: str) -> bool:
        return (self.root / "share/ament_index/resource_index/packages" / package).is_file()

    def prefix(self, package: str) -> Path:
        from mm_bringup.errors import BringupError

        if not self.installed(package):
            raise BringupError(f"package {package!r} is not installed")
        return self.root
