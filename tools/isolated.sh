#!/usr/bin/env bash
# Run a command so that no DDS packet leaves this machine: inside a loopback-only network namespace when this
# user may create one (unshare -n), always with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a random
# ROS_DOMAIN_ID (unless one is set) so parallel runs do not see each other. Used by `make test`, `make demo` and
# `make bench`; the environment (tools/env.sh) is sourced first.
#   tools/isolated.sh python -m mm_bringup.demo --time-s 60
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/tools/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
if unshare -n true 2>/dev/null; then
  echo "isolated: loopback-only network namespace, ROS_DOMAIN_ID=$ROS_DOMAIN_ID" >&2
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' isolated "$@"
fi
echo "isolated: warning: cannot create a network namespace here; relying on LOCALHOST discovery only" \
  "(ROS_DOMAIN_ID=$ROS_DOMAIN_ID)" >&2
exec "$@"
