"""The TFLite Micro runtime standing in for the servo, and what it needs to know about a quantised model.

TFLite Micro (PyPI ``tflite-micro``) runs the same kernels as the ESP32 build, so it is the reference for what
the servo does (ml-stack-notes pitfall 8). This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from tflite_micro.python.tflite_micro import runtime

from mm_contract.constants import OBS_DIM
from mm_contract.errors import TflmError
from mm_contract.policy_image import ModelType

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.integer[Any]]

# The calibrated observation range of the contract (every feature in [-1, 1], section 3).
OBS_LOW, OBS_HIGH = -1.0, 1.0
# "Representative data from real rollouts, not three vectors": fewer rows than this is refused.
MIN_REPRESENTATIVE_SAMPLES = 200
# Arena sizes probed when measuring a model's arena. The Python TFLite Micro wrapper places its allocator
# objects inside the arena and segfaults (instead of failing cleanly) below roughly 480 bytes, so nothing under
# MIN_ARENA_BYTES is ever tried; a model needing less is reported as needing MIN_ARENA_BYTES.
MIN_ARENA_BYTES = 1024
_MAX_ARENA_PROBE_BYTES = 1 << 20
_ARENA_GRANULARITY_BYTES = 16


class Scheme(StrEnum):
    """Integer quantisation scheme of the exported model."""

    INT8 = "int8"
    """int8 activations and weights (header model_type 1)."""
    INT16X8 = "int16x8"
    """int16 activations, int8 weights (header model_type 2)."""

    @property
    def model_type(self) -> ModelType:
        """The policy-image header value."""
        return ModelType.INT8 if self is Scheme.INT8 else ModelType.INT16X8

    @property
    def activation_dtype(self) -> type[np.integer[Any]]:
        """Numpy dtype of the model's input, output and activations."""
        return np.int8 if self is Scheme.INT8 else np.int16


def clip_observations(obs: npt.ArrayLike) -> FloatArray:
    """Observations as float32 (N, 8), clipped to the calibrated [-1, 1] range (so int8 inputs never wrap)."""
    x = np.asarray(obs, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != OBS_DIM or not np.all(np.isfinite(x)):
        raise TflmError(f"observations must be finite and of shape (N, {OBS_DIM}); got shape {x.shape}")
    return np.clip(x, OBS_LOW, OBS_HIGH)


def round_half_away(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Round half away from zero, as TFLite's quantiser and C's ``lroundf`` do (numpy rounds half to even)."""
    v = np.asarray(x, dtype=np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


@dataclass(frozen=True)
class QuantParams:
    """Affine quantisation of one tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int
    dtype: type[np.integer[Any]]

    def quantize(self, x: npt.ArrayLike) -> IntArray:
        """Quantise reals, saturating at the integer type's range (the servo's firmware does the same)."""
        info = np.iinfo(self.dtype)
        q = round_half_away(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: npt.ArrayLike) -> FloatArray:
        """Integers back to reals (float32)."""
        return (self.scale * (np.asarray(q, dtype=np.float64) - self.zero_point)).astype(np.float32)

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> QuantParams:
        """From a TFLite/TFLite Micro tensor-details dict (per-tensor quantisation)."""
        quant = details["quantization_parameters"]
        return cls(float(quant["scales"][0]), int(quant["zero_points"][0]), details["dtype"])


@contextlib.contextmanager
def capture_native_stderr() -> Iterator[Callable[[], str]]:
    """Capture what native code (TFLite Micro's C++ logger) writes to file descriptor 2.

    Yields a function returning the text captured so far; used both to put TFLite Micro's own reason into a
    refusal and to keep expected allocation failures (arena probing) off the console.
    """
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def read() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace").strip()

        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class TflmPolicy:
    """A quantised policy run by the TFLite Micro interpreter, called like :class:`mm_learning.actor.ActorSpec`.

    Observations are clipped to [-1, 1], quantised with the model's input scale (round half away from zero,
    saturating) and the integer output is dequantised, exactly the steps the firmware performs.
    """

    def __init__(self, model: bytes, arena_bytes: int = 64 * 1024) -> None:
        """Load ``model`` into TFLite Micro with an arena of ``arena_bytes``; raises :class:`TflmError`."""
        if arena_bytes < MIN_ARENA_BYTES:
            raise TflmError(f"arena of {arena_bytes} bytes is below the {MIN_ARENA_BYTES} this runtime needs")
        with capture_native_stderr() as log:
            try:
                self._interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
                input_details = self._interpreter.get_input_details(0)
                self._input_shape = tuple(int(d) for d in input_details["shape"])
                self.input_quant = QuantParams.from_details(input_details)
                self.output_quant = QuantParams.from_details(self._interpreter.get_output_details(0))
                # Allocation and kernel Prepare happen on the first invoke: do it now so a model TFLite Micro
                # cannot run fails here, with its reason, instead of in the middle of a rollout.
                self._invoke(np.zeros(self._input_shape, dtype=self.input_quant.dtype))
            except (RuntimeError, ValueError) as exc:
                raise TflmError(f"TFLite Micro cannot run the model: {exc}; its log: {log() or '(empty)'}") from exc

    def _invoke(self, q_row: IntArray) -> IntArray:
        self._interpreter.set_input(q_row, 0)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_output(0)).reshape(-1)

    def quantize_obs(self, obs: npt.ArrayLike) -> IntArray:
        """Observations (N, 8) -> the integer input rows the model sees (clipped to [-1, 1] first)."""
        return self.input_quant.quantize(clip_observations(np.atleast_2d(obs)))

    def act_quantized(self, q_obs: npt.ArrayLike) -> IntArray:
        """Raw integer outputs (N, 1) for integer input rows (N, 8)."""
        rows = np.asarray(q_obs, dtype=self.input_quant.dtype)
        return np.stack([self._invoke(row.reshape(self._input_shape)) for row in rows])

    def __call__(self, obs: npt.ArrayLike) -> FloatArray:
        """Actions for observations of shape (8,) or (N, 8); returns shape (1,) or (N, 1)."""
        obs_array = np.asarray(obs, dtype=np.float32)
        actions = self.output_quant.dequantize(self.act_quantized(self.quantize_obs(obs_array)))
        return actions[0] if obs_array.ndim == 1 else actions


# Run in a child process per probe: the Python TFLite Micro runtime segfaults, instead of failing cleanly, for
# some arena sizes just below what a model needs (e.g. 3536 B for a 64x64 int8 actor that needs 3552 B).
_ARENA_PROBE = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
try:
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interpreter.invoke()
except RuntimeError:
    sys.exit(3)
"""


def measure_arena_bytes(model: bytes) -> int:
    """Smallest TFLite Micro tensor arena (bytes, 16-byte steps) with which the model loads and runs.

    Measured with the x86-64 TFLite Micro build, whose persistent structures hold 8-byte pointers, so the
    figure is an upper bound for the 32-bit ESP32 build. Each probe runs in a child process (see
    ``_ARENA_PROBE``), about 0.2 s each, a dozen probes per model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(model)

        def fits(arena: int) -> bool:
            probe = [sys.executable, "-c", _ARENA_PROBE, path, str(arena)]
            return subprocess.run(probe, capture_output=True, check=False).returncode == 0

        if fits(MIN_ARENA_BYTES):
            return MIN_ARENA_BYTES
        low, high = MIN_ARENA_BYTES, 2 * MIN_ARENA_BYTES
        while not fits(high):
            if high >= _MAX_ARENA_PROBE_BYTES:
                msg = f"the model does not run in TFLite Micro even with a {_MAX_ARENA_PROBE_BYTES}-byte arena"
                raise TflmError(msg)
            low, high = high, 2 * high
        while high - low > _ARENA_GRANULARITY_BYTES:
            mid = (low + high) // 2 // _ARENA_GRANULARITY_BYTES * _ARENA_GRANULARITY_BYTES
            low, high = (low, mid) if fits(mid) else (mid, high)
    return high


def model_ops(model: bytes) -> list[str]:
    """Names of the builtin ops the model uses, in operator order (duplicates kept)."""
    fb = runtime.schema_fb
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    parsed = runtime.convert_bytearray_to_object(bytearray(model))
    codes = [names.get(runtime.get_builtin_code_from_operator_code(c), "CUSTOM") for c in parsed.operatorCodes]
    return [codes[op.opcodeIndex] for graph in parsed.subgraphs for op in (graph.operators or [])]


def tensor_types(model: bytes) -> dict[str, str]:
    """Tensor name -> TFLite tensor type name (INT8, INT16, INT32, INT64, FLOAT32, ...) for every tensor."""
    fb = runtime.schema_fb
    names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    parsed = runtime.convert_bytearray_to_object(bytearray(model))
    return {t.name.decode(): names.get(t.type, str(t.type)) for graph in parsed.subgraphs for t in graph.tensors}
