#!/usr/bin/env bash
# Run the test suite (arguments go to pytest) isolated by tools/isolated.sh: a loopback-only network namespace,
# LOCALHOST discovery and a random ROS_DOMAIN_ID, so no DDS packet leaves this machine.
# No rerun of failed tests: the cross-process tests judge the servo in its own time and give the host's stalls
# room in their timeouts, so a failure is a failure (src/mm_testing/mm_testing/ros_support.py).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
exec tools/isolated.sh python -m pytest "$@"
