#!/bin/sh
# Compile firmware/esp32/main/*.c with -fsyntax-only on this machine (no ESP-IDF here), against the real core
# headers, the real rosidl-generated mm_msgs C headers (from a colcon build of src/mm_msgs) and declaration-only
# stubs of ESP-IDF/FreeRTOS/rclc/rmw_microros (stubs/). Each Kconfig choice that changes the code is checked:
# transport UDP and UART, current reference DAC and PWM, INA219 and INA237, watchdog hold and brake.
# The C++ file(s) (policy_tflm.cc) are compiled the same way with g++ -std=gnu++17 and -std=gnu++23, so a C/C++
# linkage or header mismatch (app.h, mm_core.h) shows here. TFLite Micro comes from declaration-only stubs unless
# MM_TFLITE_MICRO_PATH names a checkout of esp-tflite-micro (its root: tensorflow/, third_party/), which is then
# used instead (nothing is fetched; see firmware/README.md). check_idf.sh compiles the app against the real ESP-IDF,
# micro-ROS and TFLite Micro sources instead of these stubs.
# Usage: check.sh <mm_msgs include dir> <ROS include root (dir of rcl/, rmw/, ...)>
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fw=$(cd "$here/../.." && pwd)
msgs=$1
ros=$2
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
# sdkconfig.h from the Kconfig defaults (each guarded so a variant can override it with -D).
awk '
  /^[ \t]*config / { name = $2; next }
  /^[ \t]*(bool|int|string)/ { type = $1 }
  /^[ \t]*default / && name != "" {
    value = $0; sub(/^[ \t]*default[ \t]+/, "", value)
    if (type == "bool") { value = (value == "y") ? "1" : "0" }
    printf "#ifndef CONFIG_%s\n#define CONFIG_%s %s\n#endif\n", name, name, value
    name = ""
  }
' "$fw/esp32/main/Kconfig.projbuild" > "$gen/sdkconfig.h"
cat >> "$gen/sdkconfig.h" <<'H'
#ifndef CONFIG_MM_TRANSPORT_UDP
#define CONFIG_MM_TRANSPORT_UDP 1
#endif
H
tflite_inc=""
if [ -n "${MM_TFLITE_MICRO_PATH:-}" ]; then
  # -isystem: the library's own headers do not build with -Wextra -Werror (unused parameters); the app's code does.
  tflite_inc="-isystem $MM_TFLITE_MICRO_PATH -isystem $MM_TFLITE_MICRO_PATH/third_party/flatbuffers/include"
  tflite_inc="$tflite_inc -isystem $MM_TFLITE_MICRO_PATH/third_party/gemmlowp"
  tflite_inc="$tflite_inc -isystem $MM_TFLITE_MICRO_PATH/third_party/ruy"
  echo "TFLite Micro from $MM_TFLITE_MICRO_PATH"
fi
rosinc=""
for d in "$ros"/*/; do rosinc="$rosinc -I$d"; done
for variant in "" \
  "-DCONFIG_MM_TRANSPORT_UDP=0 -DCONFIG_MM_TRANSPORT_UART=1 -DCONFIG_MM_CURRENT_REF_PWM=1" \
  "-DCONFIG_MM_SENSE_INA237=1 -DCONFIG_MM_WATCHDOG_BRAKE=1 -DCONFIG_MM_CAN_ENABLE=0"; do
  for src in "$fw"/esp32/main/*.c; do
    # shellcheck disable=SC2086
    gcc -fsyntax-only -std=gnu17 -Wall -Wextra -Werror $variant -I"$gen" -I"$here/stubs" \
      -I"$fw/esp32/main" -I"$fw/core/include" -I"$fw/core/can/generated" -I"$msgs" $rosinc "$src"
  done
  for src in "$fw"/esp32/main/*.cc; do
    for std in gnu++17 gnu++23; do
      # shellcheck disable=SC2086
      g++ -fsyntax-only -std=$std -Wall -Wextra -Werror $variant -I"$gen" $tflite_inc -I"$here/stubs" \
        -I"$fw/esp32/main" -I"$fw/core/include" -I"$fw/core/can/generated" "$src"
    done
  done
  echo "ok: ${variant:-defaults}"
done
