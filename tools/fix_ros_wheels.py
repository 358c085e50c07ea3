"""Rewrite the build-machine paths baked into the ROS 2 wheels' CMake files to this venv's own paths.

The ``ros-jazzy-*`` wheels export CMake targets that name ``/opt/python/cp311-cp311/include/python3.11`` and
``/opt/python/cp311-cp311/lib/python3.11/site-packages`` (where they were built). CMake then refuses our
interface build with "includes non-existent path". Run with the venv's interpreter; touches only the venv.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

BUILD_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILD_SITE = "/opt/python/cp311-cp311/lib/python3.11/site-packages"


def main() -> int:
    """Rewrite every ``share/**/*.cmake`` under the venv prefix; print how many files changed."""
    prefix = Path(sys.prefix)
    include = sysconfig.get_paths()["include"]
    site = sysconfig.get_paths()["purelib"]
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if BUILD_INCLUDE not in text and BUILD_SITE not in text:
            continue
        text = text.replace(BUILD_INCLUDE, include).replace(BUILD_SITE, site)
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        changed += 1
    print(f"fix_ros_wheels: rewrote {changed} CMake files under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
