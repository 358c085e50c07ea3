#!/usr/bin/env bash
# Run the test suite so that no DDS packet leaves this machine: inside a loopback-only network namespace when
# this user may create one (unshare -n), always with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a random
# ROS_DOMAIN_ID so parallel runs do not see each other. Arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck disable=SC1091
source tools/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
echo "tests: ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
run_pytest() {
  if unshare -n true 2>/dev/null; then
    unshare -n bash -c 'ip link set lo up && exec python -m pytest "$@"' pytest "$@"
  else
    python -m pytest "$@"
  fi
}
if unshare -n true 2>/dev/null; then
  echo "tests: running in a loopback-only network namespace"
else
  echo "tests: warning: cannot create a network namespace here; relying on LOCALHOST discovery only" >&2
fi
# No rerun of failed tests: the cross-process tests judge the servo in its own time and give the host's stalls
# room in their timeouts, so a failure is a failure (tests/ros_support.py).
run_pytest "$@"
