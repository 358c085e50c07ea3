"""TensorFlow side of the export: the Keras twin of an actor, integer-only conversion, desktop TFLite.

Kept apart from :mod:`mm_contract.tflm` because importing TensorFlow takes seconds; only export needs it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import flatbuffers
import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf
from mm_contract.policy_image import OBS_DIM
from mm_contract.tflm import (
    MIN_REPRESENTATIVE_SAMPLES,
    OBS_HIGH,
    OBS_LOW,
    FloatArray,
    IntArray,
    Scheme,
    clip_observations,
)
from tflite_micro.python.tflite_micro.runtime import schema_fb

from mm_learning.actor import ActorSpec
from mm_learning.errors import ExportError

_BUFFER_ALIGNMENT = 16


def to_keras(actor: ActorSpec) -> keras.Model:
    """Build a Keras model with the actor's weights; the action clip (or tanh) is inside the model.

    ``keras.ops.clip`` after the last Dense fuses into the last FULLY_CONNECTED (RELU_N1_TO_1), which gives a
    finer output quantisation step than a separate op (ml-stack-notes pitfall 4).
    """
    inputs = keras.Input(shape=(OBS_DIM,), dtype="float32", name="observation")
    x = inputs
    for i, layer in enumerate(actor.layers):
        last = i == len(actor.layers) - 1
        activation = "tanh" if last and actor.squash == "tanh" else layer.activation
        dense = keras.layers.Dense(layer.weight.shape[1], activation=activation, name=f"dense_{i}")
        x = dense(x)
        dense.set_weights([layer.weight, layer.bias])
    if actor.squash == "clip":
        x = keras.ops.clip(x, -1.0, 1.0)
    return keras.Model(inputs, x, name=f"{actor.algorithm.lower()}_actor")


def convert(
    keras_model: keras.Model, representative_obs: npt.ArrayLike, scheme: Scheme, *, strip: bool = True
) -> bytes:
    """Convert a float Keras actor to an integer-only .tflite model.

    Args:
        keras_model: the actor (observation (N, 8) float32 -> action (N, 1)).
        representative_obs: observations from real rollouts of the policy (N >= 200, any range: they are
            clipped to [-1, 1]). The two corners of the [-1, 1] box are added so the input calibration always
            spans exactly the contract range, whatever the rollouts visited.
        scheme: int8 or int16x8.
        strip: drop what TFLite Micro never reads (see :func:`strip_model`).

    Returns:
        The .tflite flatbuffer; input and output are integer tensors of the scheme's activation type.
    """
    rows = clip_observations(representative_obs)
    if len(rows) < MIN_REPRESENTATIVE_SAMPLES:
        msg = (
            f"{len(rows)} representative observations given; pass at least {MIN_REPRESENTATIVE_SAMPLES} "
            "from real rollouts so activation ranges are calibrated on what the servo will see"
        )
        raise ExportError(msg)
    corners = np.array([[OBS_LOW] * OBS_DIM, [OBS_HIGH] * OBS_DIM], dtype=np.float32)
    rows = np.concatenate([corners, rows])

    def samples() -> Iterator[list[FloatArray]]:
        for row in rows:
            yield [row[None, :]]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    if scheme is Scheme.INT8:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    else:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    try:
        # Keras prints "Saved artifact at ..." for its temporary SavedModel; keep the caller's stdout clean.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # The converter asks for the input statistics of the old quantisation-aware flow; this one calibrates
            # the input's scale and zero point on `representative_dataset` (the export's checks read them back).
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            converted = bytes(converter.convert())
    except Exception as exc:  # the converter raises several unrelated types (ConverterError, ValueError, ...)
        raise ExportError(f"TFLite conversion to {scheme.value} failed: {exc}") from exc
    return strip_model(converted) if strip else converted


class _AlignedBufferT(schema_fb.BufferT):
    """A flatbuffer ``Buffer`` whose data starts on a 16-byte boundary, as the TFLite converter writes it.

    The generated ``BufferT.Pack`` aligns data to 1 byte; the int32/int64 biases would then be read unaligned
    on the MCU, which the ESP32's Xtensa core does not do for 32-bit loads.
    """

    @classmethod
    def copy(cls, buffer: schema_fb.BufferT) -> _AlignedBufferT:
        """The same buffer, packed aligned."""
        aligned = cls()
        aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
        return aligned

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 -- overrides the generated name
        data = None
        if self.data is not None and len(self.data) > 0:
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), _BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema_fb.BufferStart(builder)
        if data is not None:
            schema_fb.BufferAddData(builder, data)
        schema_fb.BufferAddOffset(builder, self.offset)
        schema_fb.BufferAddSize(builder, self.size)
        return int(schema_fb.BufferEnd(builder))


def strip_model(model: bytes) -> bytes:
    """Drop what TFLite Micro never reads (signature defs, converter metadata, description, tensor names).

    Saves about 770 B on a [64, 64] actor, which is what lets its int16x8 model (12,504 -> ~11,740 B) fit the
    12 KB budget. Ops, tensors, quantisation and weights are untouched and every weight buffer stays 16-byte
    aligned (checked here; the tests check that TFLite Micro's outputs are unchanged).
    """
    parsed = schema_fb.ModelT.InitFromPackedBuf(bytearray(model), 0)
    for entry in parsed.metadata or []:
        parsed.buffers[entry.buffer].data = None
    parsed.metadata = parsed.signatureDefs = parsed.description = None
    for graph in parsed.subgraphs:
        graph.name = None
        for tensor in graph.tensors:
            tensor.name = b""
    parsed.buffers = [_AlignedBufferT.copy(buffer) for buffer in parsed.buffers]
    builder = flatbuffers.Builder(len(model))
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    stripped = bytes(builder.Output())
    root = schema_fb.Model.GetRootAs(stripped, 0)
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength() and buffer._tab.Vector(buffer._tab.Offset(4)) % _BUFFER_ALIGNMENT:
            raise ExportError(f"weight buffer {i} is not {_BUFFER_ALIGNMENT}-byte aligned after stripping")
    return stripped


def desktop_outputs(model: bytes, q_obs: npt.ArrayLike) -> IntArray:
    """Raw integer outputs (N, 1) of desktop TFLite (``tf.lite.Interpreter``) for integer input rows (N, 8).

    Only for measuring the desktop vs TFLite Micro mismatch: desktop TFLite is never the reference.
    """
    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for row in np.asarray(q_obs):
        interpreter.set_tensor(input_index, row[None, :])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index).reshape(-1))
    return np.stack(outputs)
