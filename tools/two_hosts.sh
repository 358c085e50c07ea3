#!/usr/bin/env bash
# Two hosts on this machine: a command on the learner host and one on the servo host, two network namespaces
# joined by a veth pair (10.77.0.1 and 10.77.0.2), DDS between them by subnet discovery + ROS_STATIC_PEERS, all inside
# tools/isolated.sh's loopback-only namespace so nothing leaves the machine and nothing is left after the run
# (mm_bringup.hosts; docs/remote-learner.md). Runs until either command exits or Ctrl-C.
#   tools/two_hosts.sh --learner "python -m mm_learning.learner_node --ros-args -r __ns:=/servo1" \
#                      --servo "python -m mm_sim.twin_node --ros-args -r __ns:=/servo1" [--delay-ms 25 --loss-percent 1]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$repo/tools/isolated.sh" python -m mm_bringup.hosts "$@"
