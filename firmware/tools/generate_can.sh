#!/bin/sh
# Regenerate the C pack/unpack code from the DBC (cantools generate_c_source); commit the result.
# firmware/core/test/test_can_generated.py runs it with MM_CAN_OUT=<tmp dir> and fails when the committed files differ.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cantools=${CANTOOLS:-cantools}
out=${MM_CAN_OUT:-$here/core/can/generated}
"$cantools" generate_c_source --use-float -o "$out" "$here/core/can/mm_servo.dbc"
