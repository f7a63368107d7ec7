"""Scorer hooks for generate_until tasks: `fn(item, completions) -> list[bool]`, one verdict per sample.

A generated answer needs task-specific judging that a spec cannot express: comparing text, or running code.
"""

from __future__ import annotations


def exact_match(item: dict, completions: list[str]) -> list[bool]:
    """The completion, stripped, equals the item's `target` field, stripped."""
    return [c.strip() == str(item["target"]).strip() for c in completions]


def humaneval(item: dict, completions: list[str]) -> list[bool]:
    """Each completion appended to the prompt passes the problem's unit tests, run in the sandbox (its own process
    with CPU, memory, file and process limits, a wall-clock timeout, a fresh directory and no network)."""
    from foresight.evals.sandbox import check_completion

    return [check_completion(item["prompt"], c, item["test"], item["entry_point"]).passed for c in completions]


SCORERS = {
    "exact_match": exact_match,
    "humaneval": humaneval,
}
