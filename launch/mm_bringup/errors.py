"""The bringup's exception type."""


class BringupError(Exception):
    """A bringup that cannot start as asked: the message says what was wrong and what to do."""
