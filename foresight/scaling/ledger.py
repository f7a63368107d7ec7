"""The prediction ledger: an append-only JSONL file where every entry names the hash of the one before it.

The GPT-4 report hopes that registering a prediction before the run it predicts becomes common practice. A ledger
entry is one JSON object per line, written in a canonical form (sorted keys, no spaces, ASCII), holding

    index, time_utc, prev_sha256, <what the caller registers>, sha256

where `sha256` is the hash of the canonical line without the `sha256` key and `prev_sha256` is the previous entry's
`sha256` (64 zeros for the first). `verify` recomputes everything: an edited byte breaks the entry's own hash (or its
canonical form, or its JSON), a deleted or reordered entry breaks the chain or the index sequence. Removing entries
from the *end* leaves a valid shorter chain, which no file can detect about itself; for that, keep the head hash
(each forecast keeps its entry in prediction.json and forecast.json) and pass it as `verify(..., expect=SHA)`.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from foresight.errors import ForesightError

GENESIS = "0" * 64


def canonical(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "sha256"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def target_has_started(run_dir: Path) -> bool:
    """True once the target run has written any metric (or finished): after that a prediction is no forecast."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    return (metrics.is_file() and metrics.stat().st_size > 0) or (run_dir / "summary.json").is_file()


def register(path: Path, entry: dict, target_run_dir: Path | None = None) -> dict:
    """Append `entry` to the ledger at `path` and return the full record (with index, time and hashes).

    Refused if `target_run_dir` already holds metrics, or if the existing ledger does not verify (appending to a
    tampered chain would launder it)."""
    path = Path(path)
    if target_run_dir is not None and target_has_started(target_run_dir):
        raise ForesightError(f"refusing to register: the target run {target_run_dir} has already written metrics, "
                             "so this would not be a prediction made before the run")
    for reserved in ("index", "time_utc", "prev_sha256", "sha256"):
        if reserved in entry:
            raise ForesightError(f"a ledger entry may not set {reserved!r}; the ledger writes it")
    entries = verify(path) if path.is_file() else []
    record = {
        "index": len(entries),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prev_sha256": entries[-1]["sha256"] if entries else GENESIS,
        **entry,
    }
    try:
        record["sha256"] = entry_hash(record)
        line = canonical(record) + "\n"
    except ValueError as e:  # NaN or infinity in the entry
        raise ForesightError(f"cannot register a prediction containing a non-finite number: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line with O_APPEND, then fsync: an interrupted append leaves at most a torn last line, which
    # `verify` reports, and never touches the entries before it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return record


def verify(path: Path, expect: str | None = None) -> list[dict]:
    """Check the whole chain; return the entries, or raise ForesightError naming the first bad entry."""
    path = Path(path)
    if not path.is_file():
        raise ForesightError(f"no ledger at {path}")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise ForesightError(f"{path}: the last line is not terminated (a torn or edited final entry)")
    entries: list[dict] = []
    prev = GENESIS
    for number, raw in enumerate(data.split(b"\n")[:-1] if data else [], start=1):
        where = f"{path}: entry {number - 1} (line {number})"
        try:
            text = raw.decode("ascii")
            entry = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ForesightError(f"{where} is not valid JSON ({e}); the ledger was edited or truncated") from None
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise ForesightError(f"{where} is not a ledger entry (no sha256)")
        if canonical(entry) != text:
            raise ForesightError(f"{where} is not in canonical form: its bytes were edited")
        if entry_hash(entry) != entry["sha256"]:
            raise ForesightError(f"{where} does not match its own sha256: its contents were edited")
        if entry.get("index") != number - 1:
            raise ForesightError(f"{where} has index {entry.get('index')}: an entry was deleted or reordered")
        if entry.get("prev_sha256") != prev:
            raise ForesightError(f"{where} does not follow the entry before it (prev_sha256 mismatch): an entry "
                                 "was deleted, inserted or reordered")
        prev = entry["sha256"]
        entries.append(entry)
    if expect is not None and not any(e["sha256"].startswith(expect) for e in entries):
        raise ForesightError(f"{path}: no entry has sha256 {expect}; it was removed (or this is another ledger)")
    return entries
