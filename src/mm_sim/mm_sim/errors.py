"""The exception types of mm_sim."""


class MmSimError(Exception):
    """Raised for bad input to mm_sim: an argument, an action or an option that cannot be used.

    The message says what was wrong and what to do about it.
    """
