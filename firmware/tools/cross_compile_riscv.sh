#!/bin/sh
# Cross-compile the core for an ESP32-C3-class RISC-V MCU (rv32imc, ilp32) with Debian's gcc-riscv64-unknown-elf
# and picolibc, to prove it builds freestanding (no OS, no malloc) and to measure its code size.
# The mbedTLS wrappers (src/mm_ecdsa_mbedtls.c, src/mm_cmac_mbedtls.c) are left out: ESP-IDF supplies mbedTLS on the target.
# src/mm_binding.c is host-only. Usage: cross_compile_riscv.sh [out_dir]; prints `size` output and undefined symbols.
set -eu
core=$(cd "$(dirname "$0")/../core" && pwd)
out=${1:-/tmp/mm_core_rv32}
cc=${RISCV_CC:-riscv64-unknown-elf-gcc}
prefix=${cc%gcc}
mkdir -p "$out"
rm -f "$out"/*.o "$out/libmmcore_rv32.a"
# The ESP32 build sizes: 2 x 32 KB policy slots, 256 samples (see firmware/esp32/main/Kconfig.projbuild).
flags="-march=rv32imc -mabi=ilp32 --specs=picolibc.specs -std=c11 -Os -ffunction-sections -fdata-sections \
  -ffp-contract=off -Wall -Wextra -Werror -DMM_MAX_POLICY_BYTES=32768u -DMM_SAMPLE_CAPACITY=256u \
  -I$core/include -I$core/can/generated"
for src in "$core"/src/*.c "$core"/can/generated/mm_servo.c; do
  case "$src" in
    */mm_ecdsa_mbedtls.c|*/mm_cmac_mbedtls.c|*/mm_binding.c) continue ;;
  esac
  # shellcheck disable=SC2086
  "$cc" $flags -c "$src" -o "$out/$(basename "$src" .c).o"
done
"${prefix}ar" rcs "$out/libmmcore_rv32.a" "$out"/*.o
"${prefix}size" -t "$out/libmmcore_rv32.a"
# One relocatable object: its undefined symbols are what the core needs from the C library and the platform.
"$cc" -march=rv32imc -mabi=ilp32 -nostdlib -r -o "$out/mmcore_rv32_all.o" "$out"/mm_*.o
echo "undefined:"
"${prefix}nm" -u "$out/mmcore_rv32_all.o" | awk '{print $2}' | sort -u
