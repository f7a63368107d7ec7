"""Post-training data (foresight.align.data): the readers refuse bad files naming file and line; a build on the real
corpora is deterministic across processes, keeps held-out units out of training, is cached, and writes files the
readers accept."""

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from foresight.align import data as align_data
from foresight.align.data import (BEHAVIOUR_RATIO, FILES, MAX_CHARS, align_data_dir, build, read_conversations,
                                  read_pairs)
from foresight.data.exercises import INT_INPUTS, LIST_INPUTS, held_out_problems
from foresight.data.prepare import default_root
from foresight.errors import ForesightError

SCALE = 0.3  # a third of the quotas: the corpora are read in full all the same (most of a build's ~7 s)

GOOD_CONVERSATION = {"id": "a", "source": "t", "messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."}]}
GOOD_PAIR = {"id": "p", "source": "t", "messages": [{"role": "user", "content": "2+2?"}], "chosen": "4",
             "rejected": "5"}


def _with(base: dict, **changes) -> dict:
    rec = json.loads(json.dumps(base))
    for key, value in changes.items():
        if value is None:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def _msgs(*pairs) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


# (name, second line of the file, words the message must contain); line 1 is always a good record
CONVERSATION_CASES = [
    ("invalid_json", '{"messages": [', "not valid JSON"),
    ("not_an_object", "[1, 2]", "not an object"),
    ("no_messages", json.dumps({"id": "b"}), 'no "messages"'),
    ("empty_messages", json.dumps({"id": "b", "messages": []}), '"messages" is []'),
    ("message_not_object", json.dumps({"id": "b", "messages": ["hi"]}), "message 1 is"),
    ("missing_role", json.dumps({"id": "b", "messages": [{"content": "hi"}]}), 'message 1 has no "role"'),
    ("missing_content", json.dumps({"id": "b", "messages": [{"role": "user"}, {"role": "assistant"}]}),
     'message 1 has no "content"'),
    ("unknown_role", json.dumps({"id": "b", "messages": _msgs(("human", "hi"), ("assistant", "yo"))}),
     'unknown role "human"'),
    ("content_not_string", json.dumps({"id": "b", "messages": [{"role": "user", "content": 3},
                                                               {"role": "assistant", "content": "x"}]}),
     "(expected a string)"),
    ("assistant_not_last", json.dumps({"id": "b", "messages": _msgs(("user", "hi"))}),
     "the last message is the user's"),
    ("empty_reply", json.dumps({"id": "b", "messages": _msgs(("user", "hi"), ("assistant", "  \n\t"))}),
     "empty assistant reply"),
    ("system_late", json.dumps({"id": "b", "messages": _msgs(("user", "hi"), ("system", "x"), ("assistant", "y"))}),
     "system message after the start"),
    ("no_user", json.dumps({"id": "b", "messages": _msgs(("system", "x"), ("assistant", "y"))}), "no user message"),
    ("repeated_id", json.dumps(GOOD_CONVERSATION), "used again (first on line 1)"),
    ("bad_id", json.dumps(_with(GOOD_CONVERSATION, id=7)), '"id" is 7'),
]

PAIR_CASES = [
    ("identical", json.dumps(_with(GOOD_PAIR, id="q", chosen="Same.", rejected="Same.")), "are the same text"),
    ("identical_but_spaces", json.dumps(_with(GOOD_PAIR, id="q", chosen="Same.", rejected=" Same.\n")),
     "are the same text"),
    ("empty_chosen", json.dumps(_with(GOOD_PAIR, id="q", chosen=" ")), '"chosen" is empty'),
    ("empty_rejected", json.dumps(_with(GOOD_PAIR, id="q", rejected="")), '"rejected" is empty'),
    ("no_rejected", json.dumps(_with(GOOD_PAIR, id="q", rejected=None)), 'no "rejected"'),
    ("chosen_not_text", json.dumps(_with(GOOD_PAIR, id="q", chosen=["4"])), '"chosen" is ["4"]'),
    ("ends_with_assistant", json.dumps(_with(GOOD_PAIR, id="q", messages=_msgs(("user", "a"), ("assistant", "b")))),
     "end with the user's turn"),
    ("pair_missing_role", json.dumps(_with(GOOD_PAIR, id="q", messages=[{"content": "a"}])), 'has no "role"'),
    ("pair_invalid_json", "{'single': 'quotes'}", "not valid JSON"),
]


def _file(tmp_path: Path, name: str, first: dict, second: str) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps(first) + "\n" + second + "\n")
    return path


def _refused(reader, path: Path, line: int, words: str) -> str:
    with pytest.raises(ForesightError) as e:
        reader(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert words in msg, msg
    assert "(expected" in msg or "expected" in msg, msg
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name,line,words", CONVERSATION_CASES, ids=[c[0] for c in CONVERSATION_CASES])
def test_bad_conversation_file_is_refused_naming_file_and_line(tmp_path, name, line, words):
    _refused(read_conversations, _file(tmp_path, name, GOOD_CONVERSATION, line), 2, words)


@pytest.mark.parametrize("name,line,words", PAIR_CASES, ids=[c[0] for c in PAIR_CASES])
def test_bad_pair_file_is_refused_naming_file_and_line(tmp_path, name, line, words):
    _refused(read_pairs, _file(tmp_path, name, GOOD_PAIR, line), 2, words)


def test_blank_missing_and_binary_files_are_refused(tmp_path):
    blank = tmp_path / "blank.jsonl"
    for text in ("", "\n  \n\t\n"):
        blank.write_text(text)
        _refused(read_conversations, blank, 1, "empty")
        _refused(read_pairs, blank, 1, "empty")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(json.dumps(GOOD_CONVERSATION).encode() + b"\n\n\xff\xfe{}\n")
    _refused(read_conversations, binary, 3, "not UTF-8")
    with pytest.raises(ForesightError, match=re.escape(str(tmp_path / "absent.jsonl"))):
        read_pairs(tmp_path / "absent.jsonl")


def test_good_files_are_read_with_defaults(tmp_path):
    path = tmp_path / "mine.jsonl"
    no_id = {"messages": _msgs(("user", "Define cat."), ("assistant", "A small feline."), ("user", "And dog?"),
                               ("assistant", "A canine.")), "extra": 1}
    path.write_text(json.dumps(GOOD_CONVERSATION) + "\n\n" + json.dumps(no_id) + "\n")
    recs = read_conversations(path)
    assert [r["id"] for r in recs] == ["a", "mine.jsonl:3"]
    assert [r["source"] for r in recs] == ["t", "mine"] and recs[1]["extra"] == 1
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(GOOD_PAIR) + "\n" + json.dumps(_with(GOOD_PAIR, id="p2", source=None)))
    assert [r["source"] for r in read_pairs(pairs)] == ["t", "pairs"]
    # a conversation is not a pair, and the other way round
    _refused(read_pairs, path, 1, "end with the user's turn")
    _refused(read_conversations, pairs, 1, "the last message is the user's")


def test_align_data_dir_follows_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FORESIGHT_DATA", str(tmp_path / "elsewhere"))
    assert align_data_dir() == tmp_path / "elsewhere" / "align" / "v1"
    assert align_data_dir(tmp_path) == tmp_path / "align" / "v1"


# ----- a real build ---------------------------------------------------------------------------------------------------


def _shared_cache() -> Path:
    """The project's artifact cache (./data/cache or $FORESIGHT_DATA/cache): a test root links to it, so the pinned
    packages are downloaded at most once."""
    cache = (default_root() / "cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _root(tmp_path_factory, name: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    (root / "cache").symlink_to(_shared_cache(), target_is_directory=True)
    return root


UNITS: list = []  # the units the module's build read, reused by the rebuild test (reading them is most of a build)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = _root(tmp_path_factory, "align")
    read = align_data._read_units
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(align_data, "_read_units", lambda *a: UNITS.append(read(*a)) or UNITS[-1])
        t0 = time.time()
        out = build(root, progress=False, scale=SCALE)
        seconds = time.time() - t0
    assert len(UNITS) == 1
    return out, seconds


def _load(out: Path) -> dict[str, list[dict]]:
    return {name: [json.loads(line) for line in (out / name).read_text().splitlines()] for name in FILES}


def test_build_writes_files_the_readers_accept_and_the_manifest_describes(built):
    out, seconds = built
    assert seconds < 120
    manifest = json.loads((out / "manifest.json").read_text())
    records = _load(out)
    for name in FILES:
        read = read_pairs if name.startswith("pairs") else read_conversations
        assert read(out / name) == records[name]
        entry = manifest["files"][name]
        assert entry["records"] == len(records[name]) > 50
        assert entry["by_source"] == dict(Counter(r["source"] for r in records[name]))
        assert len({r["id"] for r in records[name]}) == len(records[name])
        for r in records[name]:
            if _family(r["source"]) in CORPUS_FAMILIES:
                size = sum(len(m["content"]) for m in r["messages"])
                assert size + max(len(r.get("chosen", "")), len(r.get("rejected", ""))) <= MAX_CHARS, r["id"]
    assert {a["name"] for a in manifest["artifacts"]} == {"wikipedia", "bbc_news", "gcide", "wordnet"}
    assert all(a["version"] and len(a["sha256"]) == 64 for a in manifest["artifacts"])
    assert manifest["seed"] == align_data.SEED and manifest["format_version"] == 1
    corpus = {"wikipedia", "bbc_summary", "bbc_topic", "bbc_headline", "wordnet", "gcide", "exercises"}
    for split in ("train", "heldout"):
        assert corpus <= set(manifest["files"][f"sft_{split}.jsonl"]["by_source"])
        assert {s + "_pair" for s in corpus - {"bbc_headline"}} | {"wikipedia_number_pair"} <= \
            set(manifest["files"][f"pairs_{split}.jsonl"]["by_source"])


def _family(source: str) -> str:
    source = source.removesuffix("_pair").removesuffix("_number")
    return {"wordnet": "dictionary", "gcide": "dictionary"}.get(source, source.split("_")[0])


CORPUS_FAMILIES = {"wikipedia", "bbc", "dictionary", "exercises"}


def test_held_out_units_never_appear_in_training(built):
    out, _ = built
    records = _load(out)
    units = {}
    for split in ("train", "heldout"):
        units[split] = {(_family(r["source"]), r["id"].split("/", 1)[1])
                        for name in (f"sft_{split}.jsonl", f"pairs_{split}.jsonl") for r in records[name]
                        if _family(r["source"]) in CORPUS_FAMILIES}
    assert units["train"] and units["heldout"]
    assert not units["train"] & units["heldout"]
    # ... nor as a corrupting negative or inside a prompt: no held-out answer's ending is anywhere in training
    train_text = "\n".join(json.dumps(r, ensure_ascii=False) for name in ("sft_train.jsonl", "pairs_train.jsonl")
                           for r in records[name])
    needles = set()
    for r in records["sft_heldout.jsonl"] + records["pairs_heldout.jsonl"]:
        if r["source"].split("_")[0] in ("wikipedia", "wordnet", "gcide") or r["source"].startswith("bbc_summary"):
            replies = [r["chosen"], r["rejected"]] if "chosen" in r else [r["messages"][-1]["content"]]
            needles.update(json.dumps(text.rstrip(".")[-40:], ensure_ascii=False)[1:-1] for text in replies)
    assert len(needles) > 100
    leaked = [n for n in needles if n in train_text]
    assert not leaked, leaked[:5]


def test_held_out_exercise_problems_are_never_used(built):
    out, _ = built
    everything = "\n".join((out / name).read_text() for name in FILES)
    docstrings = {re.search(r'"""(.*)"""', p["prompt"]).group(1) for p in held_out_problems()}
    for doc in docstrings:
        assert json.dumps(doc)[1:-1] not in everything, doc


def test_exercise_pairs_differ_in_behaviour_and_demonstrations_run(built):
    out, _ = built
    records = _load(out)

    def function(text: str):
        code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
        scope: dict = {}
        exec(code, scope)  # noqa: S102 (our own generated exercises)
        return next(v for k, v in scope.items() if callable(v) and not k.startswith("__"))

    def outputs(f, arg_is_list: bool):
        return [f(list(x)) for x in LIST_INPUTS] if arg_is_list else [f(x) for x in INT_INPUTS]

    pairs = [r for r in records["pairs_train.jsonl"] if r["source"] == "exercises_pair"]
    assert len(pairs) > 50
    for r in pairs:
        is_list = "L3:" in r["id"]
        assert outputs(function(r["chosen"]), is_list) != outputs(function(r["rejected"]), is_list), r["id"]
    for r in records["sft_train.jsonl"]:
        if r["source"] == "exercises":
            function(r["messages"][-1]["content"])


def test_pairs_are_correct_versus_corrupted(built):
    out, _ = built
    records = _load(out)
    topics = {"business", "entertainment", "politics", "sport", "tech"}
    for r in records["pairs_train.jsonl"]:
        assert r["chosen"].strip() != r["rejected"].strip()
        if r["source"] == "bbc_topic_pair":
            folder = r["id"].split("/")[1]
            said = [t for t in topics if t in r["chosen"].lower()]
            assert said == [{"sports": "sport"}.get(folder, folder)], r
        if r["source"] == "wikipedia_number_pair":
            assert re.sub(r"\d", "", r["chosen"].replace(",", "")) == re.sub(r"\d", "", r["rejected"].replace(",", ""))
    for r in records["sft_train.jsonl"]:
        if r["source"] == "bbc_topic":
            folder = {"sports": "sport"}.get(r["id"].split("/")[1], r["id"].split("/")[1])
            assert folder in r["messages"][-1]["content"].lower()


def test_build_is_deterministic_across_processes(built, tmp_path_factory):
    out, _ = built
    other = _root(tmp_path_factory, "align-again")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from foresight.align.data import "
                    f"build; build(Path(sys.argv[1]), progress=False, scale={SCALE})", str(other)],
                   check=True, env=env, cwd=Path(__file__).parents[1])
    first = json.loads((out / "manifest.json").read_text())["files"]
    second = json.loads((align_data_dir(other) / "manifest.json").read_text())["files"]
    assert {k: v["sha256"] for k, v in first.items()} == {k: v["sha256"] for k, v in second.items()}


def test_second_build_is_cached_and_a_changed_file_is_rebuilt(built, capsys, monkeypatch):
    out, _ = built
    root = out.parent.parent
    digests = {name: json.loads((out / "manifest.json").read_text())["files"][name]["sha256"] for name in FILES}
    calls = []
    monkeypatch.setattr(align_data, "_read_units", lambda *a: calls.append(a) or pytest.fail("not cached"))
    t0 = time.time()
    assert build(root, scale=SCALE) == out
    assert time.time() - t0 < 2
    assert "up to date" in capsys.readouterr().out
    # a file that no longer matches its manifest is rebuilt, and comes back the same
    monkeypatch.setattr(align_data, "_read_units", lambda *a: UNITS[0])
    with open(out / "pairs_heldout.jsonl", "a") as f:
        f.write(json.dumps(GOOD_PAIR) + "\n")
    build(root, scale=SCALE)
    said = capsys.readouterr().out
    assert "pairs_heldout.jsonl does not match its manifest" in said, said
    manifest = json.loads((out / "manifest.json").read_text())
    assert {name: manifest["files"][name]["sha256"] for name in FILES} == digests
    assert not list(out.parent.glob(".tmp-*"))


def test_behaviour_sets_are_mixed_in_and_not_drowned(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    behaviour = {"steerability", "refusal", "over_refusal"}
    sft = manifest["files"]["sft_train.jsonl"]["by_source"]
    pairs = manifest["files"]["pairs_train.jsonl"]["by_source"]
    assert behaviour <= set(sft) and {b + "_pair" for b in behaviour} <= set(pairs)
    n_behaviour = sum(n for s, n in sft.items() if s in behaviour)
    n_corpus = sum(n for s, n in sft.items() if _family(s) in CORPUS_FAMILIES)
    assert n_corpus <= BEHAVIOUR_RATIO * n_behaviour
    records = _load(out)
    for split in ("train", "heldout"):
        for kind, make in (("sft", align_data.behaviour_conversations), ("pairs", align_data.behaviour_pairs)):
            mine = [r for r in records[f"{kind}_{split}.jsonl"] if r["source"].removesuffix("_pair") in behaviour]
            assert sorted(mine, key=lambda r: r["id"]) == sorted(make(split), key=lambda r: r["id"])
    # no held-out prompt, behaviour or corpus, is a training prompt
    user = {split: {m["content"] for name in (f"sft_{split}.jsonl", f"pairs_{split}.jsonl") for r in records[name]
                    for m in r["messages"] if m["role"] == "user"} for split in ("train", "heldout")}
    assert user["heldout"] and not user["heldout"] & user["train"]
