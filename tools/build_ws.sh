#!/usr/bin/env bash
# Build the colcon workspace (interfaces, Python packages, firmware host core) into build/ and install/.
# colcon builds incrementally, so a second run only checks what changed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck disable=SC1091
source tools/env.sh
colcon --log-base log build --base-paths src firmware/core launch --symlink-install \
  --event-handlers console_cohesion- console_stderr- summary+ status- \
  --cmake-args -DBUILD_TESTING=ON -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -Wno-dev
