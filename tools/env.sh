# Source me (bash): activates .venv, makes the ROS 2 Jazzy wheels usable by colcon/ament when no system ROS 2 is
# sourced, and overlays the workspace's install/ when it has been built.
# shellcheck shell=bash
mm_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$mm_repo/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # shared/docs/ros2-on-pip.md, quirk 2: ament and colcon look for packages under these prefixes.
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
fi
if [ -f "$mm_repo/install/setup.bash" ]; then
  # colcon's setup scripts read unset variables; relax `set -u` while sourcing them.
  case $- in *u*) mm_nounset=1; set +u ;; *) mm_nounset= ;; esac
  # shellcheck disable=SC1091
  source "$mm_repo/install/setup.bash"
  [ -n "$mm_nounset" ] && set -u
  unset mm_nounset
fi
unset mm_repo
