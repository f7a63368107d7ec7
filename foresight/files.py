"""Files written so that a kill at any moment leaves the old content or the new, their sha256 digests, and JSONL
files read with errors that name the file and the line.

The lowest level of the project: it imports nothing of Foresight's but its error type, so every package may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from foresight.errors import ForesightError


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see either the old content or the new, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonl_objects(path: Path, expect: str = "") -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file, or a ForesightError naming the file and the
    line: unreadable, empty, not UTF-8, not JSON, or not a JSON object. `expect` (e.g. 'with "messages"') is added
    to the errors to say what a line should hold."""
    path = Path(path)
    wanted = f" (expected one JSON object per line{', ' + expect if expect else ''})"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ForesightError(f"{path}: cannot read ({e.strerror or e}) (expected a JSONL file)") from None
    lines = data.split(b"\n")
    if not any(line.strip() for line in lines):
        raise ForesightError(f"{path}:1: the file is empty{wanted}")
    out = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue  # blank lines (a trailing newline, spacing) are allowed
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ForesightError(f"{path}:{n}: not UTF-8 text (byte {e.start} of the line is {raw[e.start]:#04x}) "
                                 f"(expected UTF-8 JSON)") from None
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ForesightError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}){wanted}") from None
        if not isinstance(rec, dict):
            raise ForesightError(f"{path}:{n}: a JSON {type(rec).__name__}, not an object{wanted}")
        out.append((n, rec))
    return out
