"""The refusal judge (foresight.align.judge) against hand labels of real model replies.

    python scripts/judge_agreement.py [LABELS.jsonl ...]   confusion matrix, accuracy, precision/recall, disagreements
    python scripts/judge_agreement.py generate OUT.jsonl   the replies that were labelled (see below), unlabelled
    python scripts/judge_agreement.py --rbrm RUBRIC.yaml [--grader MODEL]
                                                           a rule-based reward model's grader instead (below)

LABELS (default tests/data/refusal_judge_labels.jsonl) holds one JSON object per line: "id", "source" (refusal,
over_refusal or steerability), "split", "category", "system" (or null), "prompt" (the user's message), "reply",
"label" (the hand label: "refusal", "not_refusal" or "empty"), "model" and "generation" (temperature, seed,
max_new_tokens). The labels were written by reading each reply, before the judge was run on any of them
(docs/behaviour-evals.md says how, and what counts as a refusal). Several files are read as one set (ids unique
across them): tests/data/refusal_judge_labels_ppo.jsonl holds 170 PPO rollouts labelled the same way (source
"ppo_rollout", category the prompt's type), the policy's own refusal wordings that the first head misread.

`--rbrm RUBRIC --head-file HEAD` grades through a saved head instead of zero-shot (no fitting: how a shipped head
reads replies it never saw). `--rbrm RUBRIC --head` trains a classification head on the grader's hidden state
instead (cross-validated over the hand labels; see head_agreement).

`--rbrm` grades the same replies with a rubric (foresight.align.rbrm) read zero-shot by a chat model
(SmolLM2-135M-Instruct unless --grader), and compares at the granularity the hand labels have: the rubric's refusal
letters (--refusal-letters, default A,B) against "refusal", the others against "not_refusal". It prints the hand
label x letter table, accuracy per hand label and per set, and the mean probability the grader gave its letter.

`generate` asks SmolLM2-135M-Instruct (or --model) the prompts SAMPLE lists (refusal and over-refusal prompts of both
splits, and avoid_topic steerability prompts) through the same chat template and serving engine as the behaviour
evals, greedily or at temperature 0.7 with a seed, at most 96 new tokens; replies are cached like the evals'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABELS = ROOT / "tests" / "data" / "refusal_judge_labels.jsonl"
HAND = ("refusal", "not_refusal", "empty")
JUDGE = {"refusal": "refusal", "compliance": "not_refusal", "empty": "empty"}
# What was asked, and how: (source, split, every n-th prompt of the set, temperature, seed, filter). Greedy replies to
# every held-out refusal and over-refusal prompt are exactly the behaviour evals' replies (the same requests: the
# answer cache shares them); sampled replies to a spread of the training prompts add variety. SmolLM2 rarely refuses,
# so the last four passes enrich the sample in refusals, choosing prompts by category or phrasing only (never by
# the reply or the judge): the held-out categories and phrasings whose greedy replies were hand-labelled refusals
# most often (harassment_hate, privacy and self_harm requests; over-refusal questions phrased "I really want to ...
# Any advice?", "Give me some advice on ...", "Can/Could you tell me ..."), sampled twice.
ENRICH_REFUSAL = {"category": ("harassment_hate", "privacy", "self_harm")}
ENRICH_OVER = {"prefix": ("I really want to", "Give me some advice", "Can you tell me", "Could you tell me")}
SAMPLE = [
    ("refusal", "heldout", 1, 0.0, 0, None),
    ("over_refusal", "heldout", 1, 0.0, 0, None),
    ("refusal", "train", 4, 0.7, 1, None),
    ("over_refusal", "train", 8, 0.7, 1, None),
    ("steerability", "train", 5, 0.7, 1, None),
    ("refusal", "heldout", 1, 0.7, 1, ENRICH_REFUSAL),
    ("over_refusal", "heldout", 1, 0.7, 1, ENRICH_OVER),
    ("refusal", "heldout", 1, 0.7, 2, ENRICH_REFUSAL),
    ("over_refusal", "heldout", 1, 0.7, 2, ENRICH_OVER),
]
MAX_NEW_TOKENS = 96
FIELDS = ("id", "source", "split", "category", "prompt", "reply", "label", "model", "generation")


def read_labels(*paths: Path) -> list[dict]:
    """The labelled rows of every file, each checked: every field present, a known label, ids unique across files."""
    rows, seen = [], set()
    for path in paths:
        if not Path(path).is_file():
            raise SystemExit(f"{path}: no such label file")
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not JSON ({e})")
            missing = [f for f in FIELDS if f not in row]
            if missing:
                raise SystemExit(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            if row["label"] not in HAND:
                raise SystemExit(f"{path}:{n}: label {row['label']!r} is not one of {', '.join(HAND)}")
            if row["id"] in seen:
                raise SystemExit(f"{path}:{n}: id {row['id']!r} appears twice")
            seen.add(row["id"])
            rows.append(row)
    return rows


def agreement(rows: list[dict]) -> dict:
    """The judge's verdict on every reply against its hand label: a 3x3 confusion matrix (hand label x judge),
    accuracy over all rows, precision and recall of "refusal", and the rows where the two differ."""
    from foresight.align.judge import classify

    matrix = {h: {j: 0 for j in HAND} for h in HAND}
    disagreements = []
    for row in rows:
        judged = JUDGE[classify(row["reply"])]
        matrix[row["label"]][judged] += 1
        if judged != row["label"]:
            disagreements.append({**row, "judge": judged})
    tp = matrix["refusal"]["refusal"]
    said_refusal = sum(matrix[h]["refusal"] for h in HAND)
    is_refusal = sum(matrix["refusal"].values())
    n = len(rows)
    return {"n": n, "matrix": matrix, "accuracy": sum(matrix[h][h] for h in HAND) / n if n else float("nan"),
            "precision": tp / said_refusal if said_refusal else float("nan"),
            "recall": tp / is_refusal if is_refusal else float("nan"),
            "labels": {h: sum(matrix[h].values()) for h in HAND}, "disagreements": disagreements}


def rbrm_agreement(rows: list[dict], rubric_path: Path, grader: str, refusal_letters: tuple[str, ...],
                   calibrate: bool = False, head_path: Path | None = None) -> str:
    """A rubric's grader against the hand labels (see the module docstring): zero-shot, or through a saved head."""
    from foresight.align.rbrm import RBRM, load_head, load_rubric
    from foresight.weights.load import load_model

    rubric = load_rubric(rubric_path)
    unknown = [x for x in refusal_letters if x not in rubric.categories]
    if unknown:
        raise SystemExit(f"--refusal-letters: {unknown[0]!r} is not a category of {rubric_path}")
    head = load_head(head_path) if head_path is not None else None  # a bad file named before the model loads
    rows = [r for r in rows if r["label"] != "empty"]
    loaded = load_model(grader)
    rbrm = RBRM(rubric, loaded.model.eval(), loaded.tokenizer, calibrate=calibrate, head=head)
    probs = []
    for i in range(0, len(rows), 32):
        batch = rows[i:i + 32]
        probs += rbrm.probabilities([r["prompt"] for r in batch], [r["reply"] for r in batch])
        print(f"\rgraded {len(probs)}/{len(rows)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    letters = list(rubric.categories)
    table = {h: {x: 0 for x in letters} for h in ("refusal", "not_refusal")}
    chosen = [max(p, key=p.get) for p in probs]
    for row, letter in zip(rows, chosen):
        table[row["label"]][letter] += 1
    how = f"through the head {head_path} (fitted on {head.meta.get('labels', '?')} labels)" if head else "zero-shot"
    lines = [f"rubric {rubric.name} ({rubric_path}), grader {grader}, {how}; refusal letters "
             f"{','.join(refusal_letters)}" + ("; calibrated (content-free prior divided out)" if calibrate else ""),
             "", "hand label x grader's letter",
             f"{'':>12}" + "".join(f"{x:>6}" for x in letters)]
    for h, row in table.items():
        lines.append(f"{h:>12}" + "".join(f"{row[x]:>6}" for x in letters))
    lines += ["", *_accuracy_by_set(rows, [letter in refusal_letters for letter in chosen])]
    lines.append(f"mean probability of the chosen letter {sum(p[x] for p, x in zip(probs, chosen)) / len(rows):.3f}")
    return "\n".join(lines)


def _accuracy_by_set(rows: list[dict], says_refusal: list[bool]) -> list[str]:
    """Accuracy against the hand labels, overall and per (source, hand label)."""
    by_set: dict[str, list[int]] = {}
    for row, refusal in zip(rows, says_refusal):
        counts = by_set.setdefault(f"{row['source']} ({row['label']})", [0, 0])
        counts[0] += refusal == (row["label"] == "refusal")
        counts[1] += 1
    right = sum(v[0] for v in by_set.values())
    return [f"accuracy {right / len(rows):.4f} ({right}/{len(rows)})"] + [
        f"  {key}: {ok / n:.4f} ({ok}/{n})" for key, (ok, n) in sorted(by_set.items())]


def head_agreement(rows: list[dict], rubric_path: Path, grader: str, folds: int = 5, seed: int = 0,
                   save: Path | None = None, refusal_letter: str = "A", other_letter: str = "D") -> str:
    """A classification head instead of zero-shot letters (`foresight.align.rbrm.fit_head`: logistic regression on
    the grader's hidden state at the end of the rubric's grading turn), scored by stratified k-fold cross-validation
    over the hand labels (each reply judged by a head that never saw it). The labels are binary, so the head tells
    refusals from the rest; it cannot split A from B or C from D. With `save`, a head fitted on every label is
    written there (`GraderHead`: refusal -> refusal_letter, anything else -> other_letter)."""
    import numpy as np
    import torch

    from foresight.align.rbrm import GraderHead, fit_head, grading_states, load_rubric
    from foresight.weights.load import load_model

    rubric = load_rubric(rubric_path)
    rows = [r for r in rows if r["label"] != "empty"]
    loaded = load_model(grader)
    x = []
    for i in range(0, len(rows), 32):
        batch = rows[i:i + 32]
        x.append(grading_states(rubric, loaded.model.eval(), loaded.tokenizer, [r["prompt"] for r in batch],
                                [r["reply"] for r in batch]))
        print(f"\rread {i + len(batch)}/{len(rows)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    x = torch.cat(x)
    y = torch.tensor([float(r["label"] == "refusal") for r in rows])
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(rows), dtype=int)
    for label in (0.0, 1.0):  # stratified: each fold gets its share of the few refusals
        members = rng.permutation(np.flatnonzero(y.numpy() == label))
        fold[members] = np.arange(len(members)) % folds
    says = [False] * len(rows)
    for k in range(folds):
        train = torch.from_numpy(fold != k)
        w, b, mean, std = fit_head(x[train], y[train])
        head = GraderHead(w, b, mean, std, grader)
        for i, p in zip(np.flatnonzero(fold == k), head.probability(x[torch.from_numpy(fold == k)]).tolist()):
            says[i] = p > 0.5
    confusion = {(h, p): sum((r["label"] == h) and (s == (p == "refusal")) for r, s in zip(rows, says))
                 for h in ("refusal", "not_refusal") for p in ("refusal", "not_refusal")}
    accuracy = _accuracy_by_set(rows, says)
    lines = [f"rubric {rubric.name} ({rubric_path}), grader {grader}: a logistic-regression head on its hidden "
             f"state after the grading turn, {folds}-fold cross-validated (stratified, seed {seed}); "
             f"{x.shape[1]} features, L2 1e-2, balanced classes", "",
             "hand label x head", f"{'':>12}{'refusal':>12}{'not_refusal':>12}"]
    for h in ("refusal", "not_refusal"):
        lines.append(f"{h:>12}{confusion[h, 'refusal']:>12}{confusion[h, 'not_refusal']:>12}")
    lines += ["", *accuracy]
    if save is not None:
        w, b, mean, std = fit_head(x, y)
        meta = {"rubric": rubric.name, "labels": len(rows), "refusals": int(y.sum()),
                "cross_validated_accuracy": accuracy[0], "folds": folds, "seed": seed}
        GraderHead(w, b, mean, std, grader, refusal_letter, other_letter, meta).save(save)
        lines.append(f"wrote {save}: a head fitted on all {len(rows)} labels (refusal -> {refusal_letter}, "
                     f"otherwise {other_letter})")
    return "\n".join(lines)


def report(result: dict, rows: list[dict]) -> str:
    lines = [f"{result['n']} hand-labelled replies: " + ", ".join(f"{v} {k}" for k, v in result["labels"].items())]
    by = {}
    for row in rows:
        key = f"{row['source']}/{row['split']}"
        by.setdefault(key, [0, 0])
        by[key][0] += 1
        by[key][1] += row["label"] == "refusal"
    lines.append("by set: " + ", ".join(f"{k} {n} ({r} refusals)" for k, (n, r) in sorted(by.items())))
    lines += ["", "confusion matrix (rows: hand label, columns: judge)",
              f"{'':>12}" + "".join(f"{j:>12}" for j in HAND)]
    for h in HAND:
        lines.append(f"{h:>12}" + "".join(f"{result['matrix'][h][j]:>12}" for j in HAND))
    lines += ["", f"accuracy {result['accuracy']:.4f} ({result['n'] - len(result['disagreements'])}/{result['n']})",
              f"refusal: precision {result['precision']:.4f}, recall {result['recall']:.4f}", "",
              f"disagreements ({len(result['disagreements'])}):"]
    for d in result["disagreements"]:
        reply = " ".join(d["reply"].split())
        lines.append(f"- {d['id']}: hand {d['label']}, judge {d['judge']}; prompt {d['prompt']!r}\n"
                     f"    reply {reply[:300]!r}{'...' if len(reply) > 300 else ''}")
    return "\n".join(lines)


# ----- generating the replies that were labelled ------------------------------------------------------------------


def prompt_rows(source: str, split: str) -> list[dict]:
    """The prompts of one set: refusal, over_refusal, or the avoid_topic prompts of steerability."""
    from foresight.align import prompts

    items = getattr(prompts, f"{source}_prompts")(split)
    if source == "steerability":
        items = [it for it in items if it["kind"] == "avoid_topic"]
    return [{"source": source, "split": split, "item": it["id"],
             "category": it.get("category", it.get("kind")), "system": it.get("system"), "prompt": it["user"]}
            for it in items]


def _selected(row: dict, where: dict | None) -> bool:
    if where is None:
        return True
    if "category" in where:
        return row["category"] in where["category"]
    return row["prompt"].startswith(where["prefix"])


def generate(out: Path, model_spec: str) -> None:
    from foresight.evals.lm import EvalModel, GenerateChat

    lm = EvalModel(model_spec)
    written = 0
    try:
        with open(out, "w") as f:
            for source, split, every, temperature, seed, where in SAMPLE:
                rows = [r for r in prompt_rows(source, split)[::every] if _selected(r, where)]
                prompts = [lm.chat_prompt(([{"role": "system", "content": r["system"]}] if r["system"] else [])
                                          + [{"role": "user", "content": r["prompt"]}]) for r in rows]
                replies = lm.generate_chat([GenerateChat(tuple(p), MAX_NEW_TOKENS, temperature, 1.0, seed)
                                            for p in prompts])
                tag = "greedy" if temperature == 0 else f"t{temperature}-s{seed}"
                for r, reply in zip(rows, replies):
                    f.write(json.dumps({
                        "id": f"{r['item']}@{tag}", "source": source, "split": split, "category": r["category"],
                        "system": r["system"], "prompt": r["prompt"], "reply": reply, "model": model_spec,
                        "generation": {"temperature": temperature, "top_p": 1.0, "seed": seed if temperature else None,
                                       "max_new_tokens": MAX_NEW_TOKENS, "chat_template": "the model's own",
                                       "engine": "foresight.serve.engine (EvalModel.generate_chat)"}},
                        ensure_ascii=False) + "\n")
                written += len(rows)
                print(f"{source}/{split} {tag}: {len(rows)} replies", file=sys.stderr)
    finally:
        lm.close()
    print(f"wrote {written} replies to {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "generate":
        p = argparse.ArgumentParser(prog="judge_agreement.py generate")
        p.add_argument("out", type=Path)
        p.add_argument("--model", default="smollm2-135m-instruct")
        args = p.parse_args(argv[1:])
        generate(args.out, args.model)
        return 0
    p = argparse.ArgumentParser(description="the refusal judge against hand labels")
    p.add_argument("labels", type=Path, nargs="*", default=[DEFAULT_LABELS], help="label files, read as one set")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--rbrm", type=Path, help="grade with this rubric (YAML) instead of the phrase rules")
    p.add_argument("--grader", default="smollm2-135m-instruct", help="the RBRM's grading model")
    p.add_argument("--refusal-letters", default="A,B", help="the rubric's categories that are refusals")
    p.add_argument("--calibrate", action="store_true", help="divide out the grader's content-free letter prior")
    p.add_argument("--head", action="store_true",
                   help="with --rbrm: a classification head on the grader's hidden state, cross-validated")
    p.add_argument("--save-head", type=Path, default=None, help="with --head: write a head fitted on every label")
    p.add_argument("--head-file", type=Path, default=None,
                   help="with --rbrm: grade through this saved head (no fitting) instead of zero-shot")
    args = p.parse_args(argv)
    if (args.head or args.head_file) and not args.rbrm:
        p.error("--head and --head-file need --rbrm RUBRIC (the grading turn a head reads)")
    if args.head and args.head_file:
        p.error("--head fits a new head, --head-file grades through a saved one: give one of them")
    rows = read_labels(*args.labels)
    if args.head:
        print(head_agreement(rows, args.rbrm, args.grader, save=args.save_head))
        return 0
    if args.rbrm:
        print(rbrm_agreement(rows, args.rbrm, args.grader, tuple(args.refusal_letters.split(",")),
                             args.calibrate, args.head_file))
        return 0
    result = agreement(rows)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "disagreements"}, indent=1))
    else:
        print(report(result, rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from foresight.cli import run_script

    raise SystemExit(run_script(main, "scripts/judge_agreement.py"))
