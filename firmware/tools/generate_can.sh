#!/bin/sh
# Regenerate the C pack/unpack code from the DBC (cantools generate_c_source); commit the result.
# tests/firmware/test_can_generated.py runs the same command and fails when the committed files differ.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cantools=${CANTOOLS:-cantools}
"$cantools" generate_c_source --use-float -o "$here/core/can/generated" "$here/core/can/mm_servo.dbc"
