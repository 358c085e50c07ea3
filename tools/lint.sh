#!/usr/bin/env bash
# ruff and mypy over every Python package of the workspace (run by `make test`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck disable=SC1091
source tools/env.sh
ruff check .
ruff format --check --quiet . || { echo "lint: run 'ruff format' (files above differ)" >&2; exit 1; }
targets=()
for d in src/mm_contract/mm_contract src/mm_ros/mm_ros src/mm_sim/mm_sim src/mm_learning/mm_learning src/mm_driver/mm_driver \
         firmware/core/python/mm_firmware_core tools bench; do
  [ -d "$d" ] && targets+=("$d")
done
mypy "${targets[@]}"
# launch/ (package mm_bringup) holds a launch/ folder of launch files without __init__.py; as a namespace package
# it would shadow ROS 2's `launch` module, so mm_bringup is checked without namespace packages.
MYPYPATH=launch mypy --no-namespace-packages --no-explicit-package-bases launch/mm_bringup
