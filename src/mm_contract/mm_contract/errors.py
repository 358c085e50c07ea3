"""The exception types of mm_contract; every message says what was wrong and what to do about it."""

from __future__ import annotations


class ContractError(Exception):
    """Base class of every error raised by mm_contract: a value the servo contract does not allow."""


class ProfileError(ContractError):
    """A profile file or value is invalid; the message names the file and the field."""


class ObjectiveError(ContractError):
    """An objective, a mix of objectives or a term weight that cannot be used; the message lists the valid ones."""


class PolicyImageError(ContractError):
    """A policy image is malformed (magic, version, sizes, CRC) and the firmware would refuse it."""


class SignatureError(ContractError):
    """A signature does not verify, or a key file is missing, unreadable or of the wrong kind."""


class RegistryError(ContractError):
    """The policy registry cannot store or find a policy."""


class TflmError(ContractError):
    """TFLite Micro could not load or run a model; the message carries TFLite Micro's own log."""


class TransitionError(ContractError):
    """Streamed samples that cannot be transitions: malformed columns, or a servo that breaks the decision rules."""
