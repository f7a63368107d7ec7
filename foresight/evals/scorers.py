"""Scorer hooks for generate_until tasks: `fn(item, completions) -> list[bool]`, one verdict per sample.

A generated answer needs task-specific judging that a spec cannot express: comparing text, running code, checking
a steerability rule, or asking the refusal judge. A scorer may also have a `LABELS` entry, `fn(item, completions)
-> list[str]`, whose finer labels go into each item's record (the refusal judge's "refusal" / "compliance" /
"empty").
"""

from __future__ import annotations

import re
import warnings
from collections import Counter


def exact_match(item: dict, completions: list[str]) -> list[bool]:
    """The completion, stripped, equals the item's `target` field, stripped."""
    return [c.strip() == str(item["target"]).strip() for c in completions]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def answer_words(item: dict, completions: list[str]) -> list[bool]:
    """The completion's first words, lower-cased and stripped of punctuation, are the `target` field's (as many
    words as the target has): "Red." and "red circle" both answer "red"; "It is red" does not."""
    expected = words(str(item["target"]))
    return [bool(expected) and words(c)[:len(expected)] == expected for c in completions]


def humaneval(item: dict, completions: list[str], timeout_s: float = 3.0, stats: Counter | None = None) -> list[bool]:
    """Whether each completion, appended to the item's `prompt`, passes its `test` (`check(entry_point)` returned:
    every assertion ran and held), checked in the sandbox (foresight.evals.sandbox.check_completions).

    Every pass rate of the project is measured here: the evaluation harness's HumanEval task and the capability
    forecast. Identical completions are checked once. One that does not compile fails without being run: compiling
    executes nothing, and the run would fail with the same SyntaxError. The rest share one sandbox run, each in its
    own process tree. `stats`, if given, counts distinct completions, syntax errors and programs run."""
    from foresight.evals.sandbox import check_completions

    distinct = list(dict.fromkeys(completions))
    runnable = [c for c in distinct if _compiles(f"{item['prompt']}{c}\n\n{item['test']}\n")]
    results = check_completions(item["prompt"], runnable, item["test"], item["entry_point"], timeout_s=timeout_s)
    passed = dict.fromkeys(distinct, False)
    passed.update((c, r.passed) for c, r in zip(runnable, results))
    if stats is not None:
        stats.update(distinct=len(distinct), syntax_errors=len(distinct) - len(runnable), sandbox_runs=len(runnable))
    return [passed[c] for c in completions]


def _compiles(program: str) -> bool:
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal" for "5x": noise, not a result
            warnings.simplefilter("ignore")
            compile(program, "<completion>", "exec")
    except Exception:  # SyntaxError, ValueError (a NUL byte), MemoryError/RecursionError on pathological nesting
        return False
    return True


def steerability(item: dict, completions: list[str]) -> list[bool]:
    """Whether each reply obeys the item's `rule` (a dict `foresight.align.rules.parse_rule` reads), checked by the
    rule's own code; an empty reply obeys no rule."""
    from foresight.align.rules import parse_rule

    rule = parse_rule(item["rule"], f"item {item.get('id')!r}")
    return [rule.check(c) for c in completions]


def refusal(item: dict, completions: list[str]) -> list[bool]:
    """Whether the rule-based refusal judge (foresight.align.judge) reads each reply as a refusal. An empty reply is
    not one (the task counts empty replies apart)."""
    from foresight.align.judge import is_refusal

    return [is_refusal(c) for c in completions]


def refusal_labels(item: dict, completions: list[str]) -> list[str]:
    from foresight.align.judge import classify

    return [classify(c) for c in completions]


SCORERS = {
    "exact_match": exact_match,
    "answer_words": answer_words,
    "humaneval": humaneval,
    "steerability": steerability,
    "refusal": refusal,
}

LABELS = {
    "refusal": refusal_labels,
}
