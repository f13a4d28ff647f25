"""The one exception type for bad input and usage.

The CLI prints ``AuditError`` as a single line and exits with code 2 (``--debug`` shows the
traceback). The message names the file involved and the fix, e.g.
``masks/a.png: size 30x30 differs from image 28x28; it was resized (nearest neighbour)``.
"""

from __future__ import annotations


class AuditError(Exception):
    """Bad input or usage; the message is one line that names the file and the fix."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class AuditWarning(UserWarning):
    """Something the user should know that does not stop the run. The CLI prints it as one line,
    ``audit: warning: ...``, while it silences the warnings of the libraries (unless ``--debug``)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none:
    the part of a library's error that fits in a one-line message."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
