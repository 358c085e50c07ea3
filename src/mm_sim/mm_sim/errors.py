"""The one exception type of mm_sim."""


class MmSimError(Exception):
    """Raised for bad input to mm_sim: a profile, an argument or an action that cannot be used.

    The message says what was wrong and what to do about it.
    """
