"""One exception type for every problem a user can fix; the CLI prints its message and exits non-zero."""


class ForesightError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it (no traceback shown)."""

    exit_code = 2
