"""A generated family of small Python exercises in HumanEval's format, for capability forecasting at CPU scale.

HumanEval (Chen et al. 2021) is far beyond models of a few hundred thousand parameters, so the GPT-4 report's
Figure 2 needs a problem set that such models *partly* solve. These exercises are one-line functions described by a
docstring, at four levels of difficulty:

    level 1  one operation with a constant          "Return x plus 7."                      x + 7
    level 2  two operations, in order               "Return x times 3, plus 4."             (x * 3) + 4
    level 3  a list comprehension, a filter or sum  "Return the sum of the items of xs
                                                     that are greater than 5."              sum([v for v in xs if v > 5])
    level 4  a conditional expression               "Return x plus 2 if x is greater than
                                                     5, else x times 3."                    x + 2 if x > 5 else x * 3
    level 5  two named operations, no constant      "Return x doubled, then decremented."   (x * 2) - 1
    level 6  three named operations                 "Return n squared, then halved, then
                                                     negated."                              -((n ** 2) // 2)

Levels 1-4 all need the constant in the docstring copied into the code; levels 5 and 6 name their operations with
words whose code is fixed ("doubled" is always `* 2`), so they need the word-to-operator mapping and the order, and
no copying (docs/capabilities.md: at CPU scale the copying switches on abruptly, the mapping does not).

A problem is a dict with HumanEval's keys: task_id, prompt (signature + docstring), entry_point, canonical_solution
(the body) and test (a `check(candidate)` function with asserts), plus level and `key`, its meaning without names:
("add", 7) for "Return x plus 7." under any function or argument name.

Two disjoint sets come from one seeded generator:

* `held_out_problems()`: HELD_OUT_PER_LEVEL problems per level, the evaluation set. Its keys are reserved.
* `training_exercises(n)`: prompt + solution texts for the pretraining corpus, drawn only from unreserved keys, so
  the corpus never holds a held-out problem under any name (a model must generalise to new constants and
  combinations: it has seen "plus 7" inside "Return x plus 7, times 3." but never "Return x plus 7.").

Both depend only on SEED, never on a forecast's settings: a forecast may evaluate fewer problems than are reserved,
but the reserved set — and so the corpus — stays the same.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator

SEED = 20261123
HELD_OUT_PER_LEVEL = 25
LEVELS = (1, 2, 3, 4, 5, 6)
CONSTANTS = tuple(range(2, 14))  # 2..13: small numbers the tokenizer sees often; no 0 or 1 (x * 1, x // 1 are trivial)

# Operations on a number with a constant: docstring phrase and code.
OPS = {
    "add": ("plus", "{a} + {c}"),
    "sub": ("minus", "{a} - {c}"),
    "mul": ("times", "{a} * {c}"),
    "floordiv": ("integer-divided by", "{a} // {c}"),
    "mod": ("modulo", "{a} % {c}"),
}
# Levels 5-6: operations named by a word, each with fixed code (no constant to copy): docstring phrase and code.
NAMED = {
    "double": ("doubled", "{a} * 2"),
    "triple": ("tripled", "{a} * 3"),
    "halve": ("halved", "{a} // 2"),
    "square": ("squared", "{a} ** 2"),
    "negate": ("negated", "-{a}"),
    "increment": ("incremented", "{a} + 1"),
    "decrement": ("decremented", "{a} - 1"),
    "last_digit": ("reduced to its last digit", "{a} % 10"),
    "drop_digit": ("stripped of its last digit", "{a} // 10"),
}
NAMED_STEPS = {5: 2, 6: 3}  # operations per problem at each named level
COMPARISONS = {"gt": ("greater than", ">"), "lt": ("less than", "<"), "eq": ("equal to", "==")}
# Level 3: what is done with the items that pass the filter.
AGGREGATES = {"list": ("the items of {xs} that are", "[v for v in {xs} if v {cmp} {c}]"),
              "sum": ("the sum of the items of {xs} that are", "sum([v for v in {xs} if v {cmp} {c}])"),
              "count": ("how many items of {xs} are", "len([v for v in {xs} if v {cmp} {c}])")}

FUNCTION_NAMES = ("f", "g", "h", "calc", "compute", "apply", "solve", "rule", "step", "transform", "result", "value")
NUMBER_ARGS = ("x", "n", "a", "k")
LIST_ARGS = ("xs", "nums", "items", "values")

# Test inputs: every integer from -3 to 14 (so any threshold or constant in 2..13, or one off from it, changes some
# output), plus a few larger ones; lists that hold every value from -1 to 15 between them.
INT_INPUTS = tuple(range(-3, 15)) + (20, 37, 100)
LIST_INPUTS = ((), (4,), (0, 1, 2, 3, 4, 5, 6), (7, 8, 9, 10, 11, 12, 13), (13, 2, 2, 9, -4, 6), (12, 1, 8, 3, 5),
               (14, -1, 15, 20))


# ----- keys: what a problem means ------------------------------------------------------------------------------------


def _random_key(level: int, rng: random.Random) -> tuple:
    op = lambda: rng.choice(list(OPS))
    c = lambda: rng.choice(CONSTANTS)
    if level == 1:
        return (op(), c())
    if level == 2:
        return (op(), c(), op(), c())
    if level == 3:
        if rng.random() < 0.25:  # a map: "each item of xs plus 3"
            return ("map", op(), c())
        return (rng.choice(list(AGGREGATES)), rng.choice(list(COMPARISONS)), c())
    if level == 4:
        return (op(), c(), rng.choice(list(COMPARISONS)), c(), op(), c())
    if level in NAMED_STEPS:
        return tuple(rng.choice(list(NAMED)) for _ in range(NAMED_STEPS[level]))
    raise ValueError(f"no exercise level {level}; levels are {LEVELS}")


def _code_and_doc(key: tuple, level: int, arg: str) -> tuple[str, str]:
    """(expression, docstring sentence) of a key with argument name `arg`."""
    if level == 1:
        op, c = key
        return OPS[op][1].format(a=arg, c=c), f"Return {arg} {OPS[op][0]} {c}."
    if level == 2:
        op1, c1, op2, c2 = key
        inner = OPS[op1][1].format(a=arg, c=c1)
        return (OPS[op2][1].format(a=f"({inner})", c=c2),
                f"Return {arg} {OPS[op1][0]} {c1}, {OPS[op2][0]} {c2}.")
    if level == 3:
        if key[0] == "map":
            _, op, c = key
            return (f"[{OPS[op][1].format(a='v', c=c)} for v in {arg}]",
                    f"Return a list of each item of {arg} {OPS[op][0]} {c}.")
        agg, cmp, c = key
        phrase, code = AGGREGATES[agg]
        return (code.format(xs=arg, cmp=COMPARISONS[cmp][1], c=c),
                f"Return {phrase.format(xs=arg)} {COMPARISONS[cmp][0]} {c}.")
    if level == 4:
        op1, c1, cmp, t, op2, c2 = key
        then, other = OPS[op1][1].format(a=arg, c=c1), OPS[op2][1].format(a=arg, c=c2)
        return (f"{then} if {arg} {COMPARISONS[cmp][1]} {t} else {other}",
                f"Return {arg} {OPS[op1][0]} {c1} if {arg} is {COMPARISONS[cmp][0]} {t}, "
                f"else {arg} {OPS[op2][0]} {c2}.")
    if level in NAMED_STEPS:
        return _named_expr(key, arg), f"Return {arg} " + ", then ".join(NAMED[step][0] for step in key) + "."
    raise ValueError(f"no exercise level {level}")


def _named_expr(steps: tuple, arg: str) -> str:
    """The code of named operations applied in order: each to the whole expression so far, parenthesised unless it
    is the bare argument."""
    expr = arg
    for step in steps:
        expr = NAMED[step][1].format(a=expr if expr == arg else f"({expr})")
    return expr


def _outputs(key: tuple, level: int) -> list:
    expr, _ = _code_and_doc(key, level, "a")
    reference = eval(f"lambda a: {expr}")  # noqa: S307 (our own generated expression)
    return [reference(list(x)) if level == 3 else reference(x) for x in (LIST_INPUTS if level == 3 else INT_INPUTS)]


def _every_part_matters(key: tuple, level: int) -> bool:
    """Whether changing any one operation, comparison, aggregate or constant of the key changes the outputs on the
    test inputs. Keeps degenerate problems out of the held-out set: in "Return n modulo 5, modulo 10." the second
    step does nothing, so a program with any other second constant passes its tests too."""
    alternatives = [OPS, COMPARISONS, AGGREGATES, CONSTANTS, NAMED]
    want = _outputs(key, level)
    if level in NAMED_STEPS and want in _shorter_named_outputs(NAMED_STEPS[level]):
        return False  # "halved, then doubled" is x rounded, but "doubled, then halved" is x: no step may cancel out
    for i, part in enumerate(key):
        for choices in alternatives:
            if part in choices:
                for other in choices:
                    if other != part and _outputs(key[:i] + (other,) + key[i + 1:], level) == want:
                        return False
    return True


@functools.lru_cache(maxsize=None)
def _shorter_named_outputs(steps: int) -> tuple:
    """The test outputs of every composition of fewer than `steps` named operations, the identity included."""
    outputs = []
    for n in range(steps):
        for key in itertools.product(NAMED, repeat=n):
            reference = eval(f"lambda a: {_named_expr(key, 'a')}")  # noqa: S307 (our own generated expression)
            outputs.append([reference(x) for x in INT_INPUTS])
    return tuple(outputs)


def _render(key: tuple, level: int, name: str, arg: str, task_id: str, with_test: bool = True) -> dict:
    expr, sentence = _code_and_doc(key, level, arg)
    problem = {
        "task_id": task_id,
        "level": level,
        "key": key,
        "prompt": f'def {name}({arg}):\n    """{sentence}"""\n',
        "entry_point": name,
        "canonical_solution": f"    return {expr}\n",
    }
    if not with_test:  # training text needs no test, and computing one is most of the time spent here
        return problem
    inputs = LIST_INPUTS if level == 3 else INT_INPUTS
    # The expected outputs come from evaluating our own generated expression: trusted code, never a model's.
    reference = eval(f"lambda {arg}: {expr}")  # noqa: S307
    cases = [(list(x) if level == 3 else x, reference(list(x) if level == 3 else x)) for x in inputs]
    problem["test"] = ("def check(candidate):\n"
                       f"    for arg, want in {cases!r}:\n"
                       "        assert candidate(arg) == want, (arg, want)\n")
    return problem


def _names(level: int, rng: random.Random) -> tuple[str, str]:
    return rng.choice(FUNCTION_NAMES), rng.choice(LIST_ARGS if level == 3 else NUMBER_ARGS)


# ----- the two sets --------------------------------------------------------------------------------------------------


def _reserved_keys() -> dict[int, list[tuple]]:
    """HELD_OUT_PER_LEVEL distinct keys per level, in a fixed order (the held-out set's meanings), each one whose
    every part its tests can tell apart (_every_part_matters). Training draws from every other key, degenerate ones
    included: they are still correct programs."""
    rng = random.Random(f"{SEED}-held-out")
    reserved = {}
    for level in LEVELS:
        keys: list[tuple] = []
        while len(keys) < HELD_OUT_PER_LEVEL:
            key = _random_key(level, rng)
            if key not in keys and _every_part_matters(key, level):
                keys.append(key)
        reserved[level] = keys
    return reserved


def held_out_problems(per_level: int = HELD_OUT_PER_LEVEL, levels=LEVELS) -> list[dict]:
    """The evaluation problems: the first `per_level` of each level's reserved problems, level by level.

    Taking the first few of a fixed list (rather than drawing `per_level` anew) keeps a smaller evaluation a subset
    of a larger one and leaves the reserved set, which the corpus excludes, unchanged."""
    if not 1 <= per_level <= HELD_OUT_PER_LEVEL:
        raise ValueError(f"per_level must be between 1 and {HELD_OUT_PER_LEVEL} (the reserved problems per level), "
                         f"not {per_level}")
    rng = random.Random(f"{SEED}-held-out-names")
    reserved = _reserved_keys()
    problems = []
    for level in LEVELS:
        for i, key in enumerate(reserved[level]):
            name, arg = _names(level, rng)  # drawn for every reserved problem, so names do not depend on per_level
            if level in levels and i < per_level:
                problems.append(_render(key, level, name, arg, f"Exercise/L{level}/{i}"))
    return problems


def training_exercises(n: int, seed: int = SEED, with_tests: bool = False) -> Iterator[dict]:
    """n training problems (levels in equal shares), none with a reserved key. Renderings repeat (level 1 has only
    a few thousand distinct ones): in a corpus that is like training on them for several epochs."""
    reserved = {(level, key) for level, keys in _reserved_keys().items() for key in keys}
    rng = random.Random(f"{seed}-train")
    i = 0
    while i < n:
        level = LEVELS[i % len(LEVELS)]
        key = _random_key(level, rng)
        if (level, key) in reserved:
            continue
        yield _render(key, level, *_names(level, rng), f"Train/L{level}/{i}", with_test=with_tests)
        i += 1


def training_text(problem: dict) -> str:
    """How a training exercise appears in the corpus: the prompt followed by its solution, as in a source file."""
    return problem["prompt"] + problem["canonical_solution"]
