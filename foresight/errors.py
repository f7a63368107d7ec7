"""One exception type for every problem a user can fix; the CLI prints its message on one line and exits non-zero.

The CLI (foresight/cli.py) turns whatever else escapes a command into one of these as well: an OSError becomes a
ForesightError naming the file (`from_os_error`), and any other exception an InternalError, which says it is a bug
and where to report it (FORESIGHT_DEBUG=1 shows the traceback instead).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import TracebackType

# Where the one-line message for an unexpected exception sends the user.
REPORT_TO = "the Foresight issue tracker"


class ForesightError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it (no traceback shown)."""

    exit_code = 2


class UsageError(ForesightError):
    """A command line that does not parse (unknown flag, a flag's value of the wrong type or out of range)."""


class InternalError(ForesightError):
    """An exception no check anticipated: a bug in Foresight, not in the user's input."""

    exit_code = 1


class UnavailableCommand(ForesightError):
    """A command whose module failed to import (a broken or partial install)."""

    exit_code = 1


def one_line(text: str) -> str:
    """The message on one line: line breaks become '; ', and surrounding space goes."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def from_os_error(e: OSError) -> ForesightError:
    """An OSError (a missing or unreadable file, a directory where a file was expected, a full disk) as one line
    naming the file."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        files = f"{os.fsdecode(e.filename)}" + (f" -> {os.fsdecode(e.filename2)}" if e.filename2 else "")
        return ForesightError(f"{files}: {reason}")
    return ForesightError(f"{type(e).__name__}: {reason}")


def from_decode_error(e: UnicodeDecodeError) -> ForesightError:
    """A file that is not UTF-8 text (a binary file given where text was expected). The exception does not carry
    the file's name, so it is looked for in the frames that were reading it."""
    where = _file_in_traceback(e.__traceback__)
    what = f"{where}: not a text file" if where else "a file given is not text"
    return ForesightError(f"{what} (not UTF-8: byte {e.start} is {e.object[e.start]:#04x})"
                          if isinstance(e.object, (bytes, bytearray)) and e.start < len(e.object)
                          else f"{what} ({e.reason})")


def _file_in_traceback(tb: TracebackType | None) -> str | None:
    """The file being read in the innermost frame that holds one: an open file object's name, else a path."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        values = list(frame.f_locals.values())
        for v in values:
            if isinstance(v, io.IOBase) and isinstance(getattr(v, "name", None), (str, bytes)):
                return os.fsdecode(v.name)
        for v in values:
            if isinstance(v, os.PathLike) and Path(v).is_file():
                return os.fsdecode(v)
    return None
