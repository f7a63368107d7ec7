"""The request cache: every answered request is stored under (model identity, request), so a re-run is instant and
an interrupted run resumes where it stopped.

The model identity is a sha256 over the files that determine the model's answers — weights, config and tokenizer
— plus the dtype, computed without loading the model, so a run whose requests are all cached never loads it.
Hashing a 0.5 GB weights file takes a second or two; file digests are remembered by (path, size, mtime), so later
runs skip it. Results are stored in one SQLite file per model identity under $FORESIGHT_CACHE/evals/ and committed
after every batch; SQLite makes concurrent runs on the same model safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from foresight.files import sha256_file
from foresight.errors import ForesightError

# Bump when the meaning of a cached answer changes (tokenization rules, windowing): old entries are then not used.
ENGINE_VERSION = "1"


def evals_cache_dir() -> Path:
    from foresight.weights.load import cache_root

    return cache_root() / "evals"


def _file_digest(path: Path, memo: dict) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        memo[key] = sha256_file(path)
    return memo[key]


def model_files(spec: str) -> tuple[str, list[Path]]:
    """(kind, the files that determine a MODEL argument's answers), without loading it."""
    from foresight.weights.load import builtin_gguf_path, resolve

    kind, path = resolve(spec)
    if kind == "builtin":
        return kind, [builtin_gguf_path(spec)]
    if kind == "gguf":
        return kind, [path]
    if kind in ("hf", "tuned"):
        path = path / "model" if kind == "tuned" else path
        names = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "generation_config.json", "chat_template.jinja", "model.safetensors.index.json",
                 "vision.json"]  # a vision-language model's encoder settings (its weights: vision.safetensors)
        files = [path / n for n in names if (path / n).is_file()] + sorted(path.glob("*.safetensors"))
        return kind, files
    from foresight.train.checkpoint import MODEL_FILE, latest_checkpoint

    ckpt = latest_checkpoint(path / "checkpoints")
    if ckpt is None:
        raise ForesightError(f"{path / 'checkpoints'} holds no complete checkpoint yet")
    return kind, [path / "config.toml", *sorted((path / "tokenizer").rglob("*")), ckpt / MODEL_FILE]


def model_identity(spec: str, dtype: str) -> str:
    """A sha256 (hex) naming what a MODEL argument computes at this dtype."""
    kind, files = model_files(spec)
    memo_path = evals_cache_dir() / "file_digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    before = len(memo)
    h = hashlib.sha256(f"foresight-eval {ENGINE_VERSION} {kind} {dtype}\n".encode())
    for f in files:
        if f.is_file():
            h.update(f"{f.name} {_file_digest(f, memo)}\n".encode())
    if len(memo) != before:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".{memo_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=0))
        os.replace(tmp, memo_path)
    return h.hexdigest()


def request_key(kind: str, fields: dict) -> str:
    return hashlib.sha256(json.dumps([kind, fields], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    """Answers by request key, for one model identity. `None` path: a cache that remembers nothing (--no-cache)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=60)
            self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.commit()

    @classmethod
    def for_model(cls, identity: str) -> "RequestCache":
        return cls(evals_cache_dir() / f"{identity[:24]}.sqlite")

    def get_many(self, keys: list[str]) -> dict[str, object]:
        if self.db is None or not keys:
            return {}
        found = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):  # SQLite limits the number of bound parameters
            chunk = unique[i: i + 500]
            rows = self.db.execute(f"SELECT key, value FROM answers WHERE key IN ({','.join('?' * len(chunk))})",
                                   chunk)
            found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_many(self, answers: dict[str, object]) -> None:
        if self.db is None or not answers:
            return
        self.db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in answers.items()])
        self.db.commit()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
