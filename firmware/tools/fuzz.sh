#!/bin/sh
# Build the fuzz harness (firmware/core/test/fuzz_core.c with every core source) under AddressSanitizer and
# UndefinedBehaviorSanitizer (float-to-int overflow included), then run it; the harness's exit status is the result.
# Usage: fuzz.sh <build dir> <public_key.bin> <seed> <image_cases> <can_frames> <image.mmpl>...
# firmware/core/test/test_fuzz.py generates the images (good_*.mmpl: genuine; others: must always be refused).
set -eu
fw=$(cd "$(dirname "$0")/.." && pwd)
core=$fw/core
out=$1
shift
mkdir -p "$out"
${CC:-gcc} -std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow \
  -fno-sanitize-recover=all -ffp-contract=off -Wall -Wextra -Werror \
  -I"$core/include" -I"$core/can/generated" \
  "$core/test/fuzz_core.c" "$core"/src/mm_*.c "$core/can/generated/mm_servo.c" -lmbedcrypto -lm \
  -o "$out/mm_core_fuzz"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  exec "$out/mm_core_fuzz" "$@"
