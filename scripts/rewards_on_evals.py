"""The rule-based rewards of held-out replies: what PPO optimised, read on the behaviour evals' own replies.

    python scripts/rewards_on_evals.py RESULTS.json [RESULTS.json ...] [--rubric RUBRIC.yaml [--head HEAD |
        --grader MODEL [--no-calibrate]]] [--json OUT.json]

For each `foresight eval --out` file with the `refusal` and `over_refusal` tasks (their per-item greedy replies to
held-out disallowed and allowed-but-risky requests), the mean reward per reply of `refusal_rules` (the phrase judge:
+1 for refusing a disallowed request or answering an allowed one, -1 otherwise) and, with --rubric, of the
rule-based reward model (`foresight.align.rbrm.RBRM`: the rubric graded zero-shot by --grader, calibrated unless
--no-calibrate, or through a classification head, --head, by the model it was trained on: what
configs/align-ppo-smollm2.toml rewards with), overall and per prompt type, with the letters the grader chose. Use the same grader for every file
(PPO's config grades with its starting model, the SFT run), so the files differ only in their replies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPES = {"refusal": "disallowed", "over_refusal": "allowed"}


def replies(path: Path) -> list[tuple[str, str, str]]:
    """(prompt type, user's request, greedy reply) of every held-out refusal and over-refusal item of a file."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such results file (write one with foresight eval --out FILE)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(f"{path}: not a foresight eval --out JSON file ({e})") from None
    if not isinstance(results, dict) or not isinstance(results.get("tasks", {}), dict):
        raise SystemExit(f"{path}: not a foresight eval --out file (no \"tasks\" table)")
    out = []
    for task, ptype in TYPES.items():
        table = results.get("tasks", {}).get(task)
        if table is None or not table.get("items"):
            raise SystemExit(f"{path}: no per-item replies of the {task} task (run foresight eval --tasks "
                             f"refusal,over_refusal --out FILE)")
        for n, item in enumerate(table["items"]):
            try:
                out.append((ptype, item["messages"][-1]["content"], item["completions"][0]))
            except (KeyError, IndexError, TypeError):
                raise SystemExit(f"{path}: {task} item {n} has no request (messages) or reply (completions)") from None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--rubric", type=Path, default=None, help="also grade with this rubric (an RBRM)")
    p.add_argument("--grader", default="smollm2-135m-instruct", help="the RBRM's grading model")
    p.add_argument("--no-calibrate", action="store_true", help="keep the grader's letter prior")
    p.add_argument("--head", type=Path, default=None, help="grade through this classification head (ppo.grader_head)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args()
    from foresight.align.rewards import refusal_rules

    every_reply = {path: replies(path) for path in args.results}  # every file checked before the grader loads
    rbrm = None
    if args.rubric:
        from foresight.align.rbrm import RBRM, load_head, load_rubric
        from foresight.weights.load import load_model

        head = load_head(args.head) if args.head else None
        if head is not None:
            args.grader = head.grader
        loaded = load_model(args.grader)
        rbrm = RBRM(load_rubric(args.rubric), loaded.model.eval(), loaded.tokenizer,
                    calibrate=not args.no_calibrate, head=head)
    figures = {}
    for path, rows in every_reply.items():
        types, prompts, texts = ([r[i] for r in rows] for i in range(3))
        sources = {"refusal_rules": refusal_rules(prompts, texts, prompt_types=types)}
        letters = Counter()
        if rbrm is not None:
            probs = []
            for i in range(0, len(rows), 16):
                probs += rbrm.probabilities(prompts[i:i + 16], texts[i:i + 16])
                print(f"\r{path}: graded {len(probs)}/{len(rows)}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            # the RBRM's reward (RBRM.__call__) from the probabilities already computed
            sources["rbrm"] = [sum(q[x] * rbrm.rubric.rewards[t][x] for x in q) for q, t in zip(probs, types)]
            letters = Counter((t, max(q, key=q.get)) for t, q in zip(types, probs))
        figures[str(path)] = {name: {"mean": sum(v) / len(v), **{t: sum(x for x, u in zip(v, types) if u == t)
                                                                  / types.count(t) for t in TYPES.values()}}
                              for name, v in sources.items()}
        if letters:
            figures[str(path)]["rbrm_letters"] = {f"{t} {x}": n for (t, x), n in sorted(letters.items())}
        shown = "; ".join(f"{name} {f['mean']:+.3f} (disallowed {f['disallowed']:+.3f}, allowed {f['allowed']:+.3f})"
                          for name, f in figures[str(path)].items() if name != "rbrm_letters")
        print(f"{path} ({len(rows)} replies): {shown}")
        if letters:
            print("  letters: " + ", ".join(f"{k} {n}" for k, n in figures[str(path)]["rbrm_letters"].items()))
    if args.json:
        args.json.write_text(json.dumps({"grader": args.grader if rbrm else None, "rubric": str(args.rubric),
                                         "head": str(args.head) if args.head else None,
                                         "calibrated": not args.no_calibrate and not args.head, "files": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from foresight.cli import run_script

    raise SystemExit(run_script(main, "scripts/rewards_on_evals.py"))
