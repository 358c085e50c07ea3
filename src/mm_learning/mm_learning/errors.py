"""Exception types of mm_learning; every message says what was wrong and what to do about it."""

from __future__ import annotations

from enum import StrEnum


class LearningError(Exception):
    """Base class of every error raised by mm_learning."""


class ExportError(LearningError):
    """The trained model cannot be turned into a servo policy (unsupported algorithm, layer or input)."""


class RejectionCause(StrEnum):
    """Machine-readable reason why an exported policy was refused (one per acceptance check)."""

    UNSUPPORTED_OP = "unsupported_op"
    """(a) an op or tensor type the firmware's TFLite Micro build cannot run."""
    ACTION_ERROR = "action_error"
    """(b) the quantised actions differ too much from the float actions on held-out observations."""
    CLOSED_LOOP = "closed_loop"
    """(c) the quantised policy drives the twin differently from the float policy."""
    MODEL_TOO_LARGE = "model_too_large"
    """(d) the .tflite model is larger than the firmware's model budget."""
    ARENA_TOO_LARGE = "arena_too_large"
    """(d) the TFLite Micro tensor arena the model needs exceeds the firmware's arena budget."""


class PolicyRejected(LearningError):  # noqa: N818 -- the name reads as the outcome callers catch
    """An exported policy failed an acceptance check; :attr:`cause` says which one."""

    def __init__(self, cause: RejectionCause, message: str) -> None:
        super().__init__(f"policy rejected ({cause.value}): {message}")
        self.cause = cause


class TrainingError(LearningError):
    """A training run cannot start or continue (bad objective, algorithm, budget, preset or run directory)."""


class OnlineError(LearningError):
    """An online session cannot start or go on (bad configuration, a servo that refuses or stops answering)."""
