"""The prediction ledger: an append-only JSONL file where every entry names the hash of the one before it.

The GPT-4 report hopes that registering a prediction before the run it predicts becomes common practice. A ledger
entry is one JSON object per line, written in a canonical form (sorted keys, no spaces, ASCII). Every writer builds
it with `make_entry` (format 2):

    index, time_utc, prev_sha256                       written by `register`
    format = 2, kind ("loss" or "capabilities"), law, target_config_sha256, target_compute, source,
    ladder_results {name: sha256 of what the fit read},
    predictions [{x, y, low, high, level, params, and for capabilities name, task_ids}, ...]
    signer, signature                                  only with a signing key (below)
    sha256

`sha256` is the hash of the canonical line without `sha256` and `signature`, and `prev_sha256` is the previous
entry's `sha256` (64 zeros for the first). Files written before format 2 hold three older shapes (no `format`): a
forecast's loss entry with one `prediction`, `foresight predict`'s `predictions` list, and a capability entry whose
`predictions` map bucket -> prediction. They verify as before, and `predictions_of` reads all of them.

What `verify` detects: an edited byte breaks the entry's own hash (or its canonical form, or its JSON); a deleted,
inserted or reordered entry breaks the chain or the index sequence. Two edits no file can detect about itself:
entries cut from the end (a valid shorter chain), and a whole chain rewritten with recomputed hashes. Both are caught
only against something kept outside the file, an *anchor*:
  - the head hash (`verify(..., expect=SHA)`; every forecast prints it and keeps it in prediction.json): a cut or
    rewritten chain no longer holds it;
  - an ed25519 signature on every entry (`register(..., signing_key=)`, `verify(..., public_key=)`): `signer` (the
    public key, inside the hashed body) and `signature` (over the entry's sha256, as 64 ASCII hex characters). A
    rewrite must be signed by a key the forger does not hold. It does not catch entries cut from the end;
  - the head committed to git (`anchor_in_git`, `git_anchored_heads`): the rewritten chain misses the committed
    heads, unless the forger also rewrites that repository's history (and every clone of it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from foresight.errors import ForesightError

GENESIS = "0" * 64
FORMAT = 2
KINDS = ("loss", "capabilities")
SHA256 = re.compile(r"[0-9a-f]{64}")
# Written by `register`, never by the caller.
RESERVED = ("index", "time_utc", "prev_sha256", "sha256", "signer", "signature")


def canonical(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(entry: dict) -> str:
    # The signature is over this hash, so it cannot be inside it; `signer` is, so a signature can be checked
    # against the entry's own key even without --public-key (a changed signature byte is then still caught).
    body = {k: v for k, v in entry.items() if k not in ("sha256", "signature")}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


# ----- building entries -------------------------------------------------------------------------------------------


def make_entry(kind: str, law: str, predictions: list[dict], *, ladder_results: dict[str, str],
               target_config_sha256: str | None = None, target_compute: float | None = None,
               source: str | None = None) -> dict:
    """The one shape every writer registers (format 2). Each prediction holds at least x, y, low, high, level and
    the law's params at that point; extra keys (name, task_ids, extrapolation) are kept."""
    entry = {"format": FORMAT, "kind": kind, "law": law, "predictions": [dict(p) for p in predictions],
             "ladder_results": dict(ladder_results), "target_config_sha256": target_config_sha256,
             "target_compute": target_compute, "source": source}
    problem = _shape_problem(entry)
    if problem:
        raise ForesightError(f"cannot register this prediction: {problem}")
    return entry


def _shape_problem(entry: dict) -> str | None:
    """Why a format-2 entry is malformed, or None. Checked when building and when verifying, so `show` can rely on
    the shape of every format-2 entry in a verified ledger."""
    if entry.get("kind") not in KINDS:
        return f"kind is {entry.get('kind')!r}, not one of {', '.join(KINDS)}"
    if not isinstance(entry.get("law"), str) or not isinstance(entry.get("ladder_results"), dict):
        return "law must be a string and ladder_results a mapping"
    preds = entry.get("predictions")
    if not isinstance(preds, list) or not preds:
        return "predictions must be a non-empty list"
    for p in preds:
        if not isinstance(p, dict) or not {"x", "y", "low", "high", "level", "params"} <= p.keys():
            return "every prediction needs x, y, low, high, level and params"
        if not all(isinstance(p[k], (int, float)) and math.isfinite(p[k]) for k in ("y", "low", "high", "level")):
            return f"a prediction's y, low, high or level is not a finite number: {p}"
    return None


def predictions_of(entry: dict) -> list[dict]:
    """Each prediction of an entry of any format as {name, y, low, high, ...}; [] if it holds none."""
    preds = entry.get("predictions")
    if isinstance(preds, dict):  # format 1, capabilities: bucket -> prediction
        return [{"name": name, **p} for name, p in preds.items() if isinstance(p, dict)]
    if isinstance(preds, list):  # format 2, and format 1 of `foresight predict`
        return [p for p in preds if isinstance(p, dict)]
    if isinstance(entry.get("prediction"), dict):  # format 1 of `foresight forecast`
        return [entry["prediction"]]
    return []


# ----- keys -------------------------------------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ForesightError("signed ledgers need the cryptography package: pip install cryptography") from None
    return serialization, ed25519


def public_hex(private_key) -> str:
    serialization, _ = _crypto()
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def write_keypair(path: Path) -> str:
    """Write a new ed25519 private key to `path` (PEM, mode 0600) and its public key, hex, to `path`.pub; return
    the public key. Refuses to overwrite: a lost key cannot sign again, a replaced one would sign as someone else."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists():
            raise ForesightError(f"{p} already exists; choose another --out (a key is never overwritten)")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 in one step (O_EXCL): the private key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = public_hex(key)
    pub_path.write_text(pub + "\n")
    return pub


def load_signing_key(path: Path):
    """The ed25519 private key in `path` (written by `foresight ledger keygen`)."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise ForesightError(f"cannot read the signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError):
        raise ForesightError(f"{path} is not an unencrypted PEM private key (write one with "
                             "`foresight ledger keygen --out KEY`)") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ForesightError(f"{path} is not an ed25519 key (write one with `foresight ledger keygen --out KEY`)")
    return key


def parse_public_key(spec: str) -> str:
    """A public key given as 64 hex characters, or as a file holding them (KEY.pub from keygen); returns the hex."""
    text = spec.strip().lower()
    if not SHA256.fullmatch(text):
        path = Path(spec)
        if not path.is_file():
            raise ForesightError(f"--public-key {spec!r} is neither 64 hex characters nor a file")
        text = path.read_text(errors="replace").strip().lower()
        if not SHA256.fullmatch(text):
            raise ForesightError(f"{path} does not hold an ed25519 public key as 64 hex characters "
                                 "(the KEY.pub that `foresight ledger keygen` writes)")
    return text


def _signature_ok(public: str, signature: str, sha: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    _, ed25519 = _crypto()
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(bytes.fromhex(signature),
                                                                                 sha.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


# ----- registering and verifying ----------------------------------------------------------------------------------


def target_has_started(run_dir: Path) -> bool:
    """True once the target run has written any metric (or finished): after that a prediction is no forecast."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    return (metrics.is_file() and metrics.stat().st_size > 0) or (run_dir / "summary.json").is_file()


def register(path: Path, entry: dict, target_run_dir: Path | None = None, signing_key=None) -> dict:
    """Append `entry` (from `make_entry`) to the ledger at `path` and return the full record (with index, time and
    hashes; signed with `signing_key`, from `load_signing_key`, if given).

    Refused if `target_run_dir` already holds metrics, or if the existing ledger does not verify (appending to a
    tampered chain would launder it)."""
    path = Path(path)
    if target_run_dir is not None and target_has_started(target_run_dir):
        raise ForesightError(f"refusing to register: the target run {target_run_dir} has already written metrics, "
                             "so this would not be a prediction made before the run")
    for reserved in RESERVED:
        if reserved in entry:
            raise ForesightError(f"a ledger entry may not set {reserved!r}; the ledger writes it")
    # Only entries from make_entry: one shape, so every reader (show, the report) handles every entry.
    problem = _shape_problem(entry) if entry.get("format") == FORMAT else "it was not built by make_entry"
    if problem:
        raise ForesightError(f"cannot register this entry: {problem}")
    entries = verify(path, allow_empty=True) if path.is_file() else []
    record = {
        "index": len(entries),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prev_sha256": entries[-1]["sha256"] if entries else GENESIS,
        **entry,
    }
    if signing_key is not None:
        record["signer"] = public_hex(signing_key)
    try:
        record["sha256"] = entry_hash(record)
        if signing_key is not None:
            record["signature"] = signing_key.sign(record["sha256"].encode()).hex()
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


def verify(path: Path, expect: str | None = None, public_key: str | None = None,
           allow_empty: bool = False) -> list[dict]:
    """Check the whole chain; return the entries, or raise ForesightError naming the first bad entry.

    Every signature present is checked against its entry's own `signer`; with `public_key` (hex) every entry must
    also be signed by that key. `expect` (a full sha256) must be the hash of some entry. A file with no entries is
    refused unless `allow_empty`: "0 entries, intact" would read as a pass for a ledger that was emptied."""
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
        if "format" in entry:
            problem = _shape_problem(entry) if entry["format"] == FORMAT else f"unknown format {entry['format']!r}"
            if problem:
                raise ForesightError(f"{where} is not a valid ledger entry: {problem}")
        _check_signature(entry, where, public_key)
        prev = entry["sha256"]
        entries.append(entry)
    if not entries and not allow_empty:
        raise ForesightError(f"{path} holds no entries: nothing is registered in it (an emptied ledger looks "
                             "the same)")
    if expect is not None:
        expected_entry(entries, expect, path)
    return entries


def _check_signature(entry: dict, where: str, public_key: str | None) -> None:
    signer, signature = entry.get("signer"), entry.get("signature")
    if signer is None and signature is None:
        if public_key is not None:
            raise ForesightError(f"{where} is not signed, and --public-key requires every entry to be signed")
        return
    if not (isinstance(signer, str) and SHA256.fullmatch(signer) and isinstance(signature, str)
            and re.fullmatch(r"[0-9a-f]{128}", signature)):
        raise ForesightError(f"{where} has a malformed signer or signature")
    if not _signature_ok(signer, signature, entry["sha256"]):
        raise ForesightError(f"{where} has a signature that does not match its sha256: it was edited or forged")
    if public_key is not None and signer != public_key:
        raise ForesightError(f"{where} is signed by another key ({signer[:16]}…), not {public_key[:16]}…")


def check_sha256(value: str, what: str = "--expect") -> str:
    """A full sha256, lower-cased. A prefix is refused: '' or '1' would match almost any ledger, and the shorter the
    prefix, the cheaper a rewritten chain whose head shares it."""
    sha = value.strip().lower()
    if not SHA256.fullmatch(sha):
        raise ForesightError(f"{what} {value!r} is not a sha256: give all 64 hex characters of the head (as "
                             "printed by `foresight forecast`, `predict --register` or `ledger verify`)")
    return sha


def expected_entry(entries: list[dict], expect: str, path: Path) -> dict:
    """The entry whose sha256 is `expect`; an error if none is (entries were cut, or the chain was rewritten)."""
    sha = check_sha256(expect)
    for e in entries:
        if e["sha256"] == sha:
            return e
    raise ForesightError(f"{path}: no entry has sha256 {sha}: it was cut from the end, the chain was rewritten, "
                         "or this is another ledger")


# ----- anchoring the head in git ----------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise ForesightError("git is not installed") from None
    if r.returncode != 0:
        raise ForesightError(f"git {' '.join(args)} failed in {cwd}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def _repo_and_path(path: Path) -> tuple[Path, str]:
    """The git work tree holding `path`, and `path` relative to it."""
    repo = Path(_git(path.parent, "rev-parse", "--show-toplevel").strip()).resolve()
    return repo, path.resolve().relative_to(repo).as_posix()


def anchor_path(ledger: Path) -> Path:
    """The file next to the ledger that holds its anchored head: LEDGER.head."""
    ledger = Path(ledger)
    return ledger.with_name(ledger.name + ".head")


def anchor_in_git(ledger: Path) -> tuple[dict, str | None]:
    """Write the verified ledger's head to LEDGER.head and commit that one file in the git repository holding the
    ledger (other staged changes stay staged). Returns the head entry and the new commit (None if already there)."""
    ledger = Path(ledger).resolve()
    head = verify(ledger)[-1]
    anchor = anchor_path(ledger)
    text = f"{head['sha256']} entry {head['index']} {head['time_utc']}\n"
    repo, rel = _repo_and_path(anchor)
    try:
        if _git(repo, "show", f"HEAD:{rel}") == text:
            return head, None
    except ForesightError:  # not committed yet (or no commit at all)
        pass
    anchor.write_text(text)
    _git(repo, "add", "-f", "--", rel)  # -f: a forecast directory is often git-ignored; the anchor must go in
    # `commit -- PATH` commits only that path, whatever else the user has staged.
    _git(repo, "commit", "-q", "-m", f"ledger head of {ledger.name}: {head['sha256']}", "--", rel)
    return head, _git(repo, "rev-parse", "HEAD").strip()


def git_anchored_heads(ledger: Path) -> list[tuple[str, str]]:
    """Every head ever committed to LEDGER.head in the git history of the checked-out branch, as (commit, sha256),
    newest first."""
    ledger = Path(ledger).resolve()
    repo, rel = _repo_and_path(anchor_path(ledger))
    has_commits = subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=repo,
                                 capture_output=True).returncode == 0
    commits = _git(repo, "log", "--format=%H", "--", rel).split() if has_commits else []
    heads = []
    for commit in commits:
        try:
            text = _git(repo, "show", f"{commit}:{rel}")
        except ForesightError:  # the commit that deleted the file
            continue
        sha = text.split()[0] if text.split() else ""
        heads.append((commit, check_sha256(sha, f"{rel} at commit {commit[:12]} holds")))
    if not heads:
        raise ForesightError(f"no head of {ledger} is anchored in git ({rel} was never committed); run "
                             f"`foresight ledger anchor {ledger}`")
    return heads
