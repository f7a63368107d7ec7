"""Scorer hooks for generate_until tasks: `fn(item, completions) -> list[bool]`, one verdict per sample.

A generated answer needs task-specific judging that a spec cannot express: comparing text, or running code.
"""

from __future__ import annotations

import warnings
from collections import Counter


def exact_match(item: dict, completions: list[str]) -> list[bool]:
    """The completion, stripped, equals the item's `target` field, stripped."""
    return [c.strip() == str(item["target"]).strip() for c in completions]


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


SCORERS = {
    "exact_match": exact_match,
    "humaneval": humaneval,
}
