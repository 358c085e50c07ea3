#!/usr/bin/env bash
# Start this host's rmw_zenoh router for a learner and servos on different hosts (a real ROS 2 Jazzy install with
# ros-jazzy-rmw-zenoh-cpp; the pip wheels of this repository have no rmw_zenoh). Every node of the host then uses
# RMW_IMPLEMENTATION=rmw_zenoh_cpp and reaches the others through this router (docs/remote-learner.md).
#   learner host:  tools/zenoh_router.sh                              # listens on tcp/[::]:7447
#   servo host:    tools/zenoh_router.sh tcp/<learner-host>:7447      # and connects to the learner host's router
# Only one side needs to reach the other: the servo host dials out, so the learner box (cloud, desktop) needs one
# open TCP port and the servos may sit behind NAT. The override keeps rmw_zenoh's default router config otherwise.
set -euo pipefail
if ! ros2 pkg prefix rmw_zenoh_cpp >/dev/null 2>&1; then
  echo "zenoh_router: rmw_zenoh_cpp is not installed: sudo apt install ros-${ROS_DISTRO:-jazzy}-rmw-zenoh-cpp" >&2
  exit 1
fi
if [ $# -gt 0 ]; then
  export ZENOH_CONFIG_OVERRIDE="connect/endpoints=[\"$1\"]${ZENOH_CONFIG_OVERRIDE:+;$ZENOH_CONFIG_OVERRIDE}"
fi
exec ros2 run rmw_zenoh_cpp rmw_zenohd
