"""Token shards: one flat array per split (train.bin, val.bin), documents separated by the EOS token, read back as
read-only memory maps and checked against the sha256 recorded in manifest.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from foresight.files import sha256_file
from foresight.errors import ForesightError

SPLITS = ("train", "val")


def shard_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def _prepare_hint(data_dir: Path) -> str:
    """The prepare command that would create `data_dir`, guessed from its name (e.g. default-bpe8192)."""
    name = Path(data_dir).name
    corpus, _, tok = name.partition("-")
    tok = tok.split("-")[0]
    tokenizer = f"bpe:{tok[3:]}" if tok.startswith("bpe") else (tok or "bpe:8192")
    root = Path(data_dir).parent
    root_arg = "" if root.resolve() == Path("data").resolve() else f" --root {root}"
    return f"foresight data prepare --corpus {corpus or 'default'} --tokenizer {tokenizer}{root_arg}"


def read_manifest(data_dir: Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise ForesightError(f"no prepared data at {data_dir} (no manifest.json): run `{_prepare_hint(data_dir)}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ForesightError(f"{path} is not valid JSON ({e}); re-run `{_prepare_hint(data_dir)}`") from None


def open_split(data_dir: Path, split: str, verify: bool = True) -> np.ndarray:
    """The split's tokens as a read-only memory map; with verify, its sha256 must match the manifest."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    info = manifest["splits"][split]
    path = data_dir / info["file"]
    if not path.is_file():
        raise ForesightError(f"missing shard {path}: re-run `{_prepare_hint(data_dir)}`")
    if verify:
        digest = sha256_file(path)
        if digest != info["sha256"]:
            raise ForesightError(f"checksum mismatch: {path} has sha256 {digest[:16]}…, manifest.json says "
                                 f"{info['sha256'][:16]}…; the shard is corrupted — delete {data_dir} and re-run "
                                 f"`{_prepare_hint(data_dir)}`")
    tokens = np.memmap(path, dtype=np.dtype(manifest["dtype"]), mode="r")
    if len(tokens) != info["tokens"]:
        raise ForesightError(f"{path} holds {len(tokens)} tokens but manifest.json says {info['tokens']}")
    return tokens


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats/token) of the tokens' unigram distribution: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(tokens), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
