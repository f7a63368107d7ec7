"""Capability forecasting: the exercise generator, its train/held-out split, checking in the sandbox, the
−E[log pass_rate] = α·C^(−k) fit, and the [forecast.capabilities] config section."""

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from foresight.errors import ForesightError
from foresight.data.exercises import (HELD_OUT_PER_LEVEL, INT_INPUTS, LEVELS, NAMED, NAMED_STEPS, _named_expr,
                                      held_out_problems, training_exercises)
from foresight.scaling.capabilities import check_problem, fit_capabilities, judge_capabilities
from foresight.scaling.ladder import dump_forecast_config, load_forecast_config

REPO = Path(__file__).resolve().parents[1]


# ----- the generator -------------------------------------------------------------------------------------------------


def test_generator_is_seeded_and_deterministic():
    problems = held_out_problems()
    assert problems == held_out_problems()
    assert len(problems) == HELD_OUT_PER_LEVEL * len(LEVELS)
    assert {p["level"] for p in problems} == set(LEVELS)
    assert len({(p["level"], p["key"]) for p in problems}) == len(problems)  # distinct meanings
    for p in problems:  # HumanEval's fields
        assert set(p) >= {"task_id", "prompt", "entry_point", "canonical_solution", "test"}
        assert p["prompt"].startswith(f"def {p['entry_point']}(") and p["prompt"].endswith('"""\n')
    # a smaller evaluation is a prefix of each level's list, with the same names
    small = held_out_problems(3)
    assert small == [p for p in problems if int(p["task_id"].rsplit("/", 1)[1]) < 3]
    assert list(training_exercises(300)) == list(training_exercises(300))
    assert list(training_exercises(50, seed=1)) != list(training_exercises(50))


def _sentence_pattern(text: str) -> set[str]:
    """Every docstring in `text`, with its function's argument name replaced by ARG: the problem's meaning."""
    found = set()
    for arg, sentence in re.findall(r'def \w+\((\w+)\):\n    """(.*?)"""', text):
        found.add(re.sub(rf"\b{arg}\b", "ARG", sentence))
    return found


def test_held_out_problems_never_reach_the_corpus():
    from foresight.data.corpus import read_exercises

    held = held_out_problems()
    held_keys = {(p["level"], p["key"]) for p in held}
    train = list(training_exercises(20_000))
    assert not held_keys & {(p["level"], p["key"]) for p in train}
    # Independently of the keys, on the corpus text itself: no held-out docstring appears, under any argument name.
    held_sentences = set().union(*(_sentence_pattern(p["prompt"]) for p in held))
    corpus = "".join(doc.text for doc in read_exercises(n=20_000))
    seen = _sentence_pattern(corpus)
    assert len(seen) > 1000 and not held_sentences & seen
    # ... while the corpus does hold the held-out operations and constants, inside other combinations
    assert any("plus 7" in s for s in seen) and any("modulo 3" in s for s in seen)
    assert any("squared, then halved" in s for s in seen)


def test_named_compositions_held_out_are_not_shorter_ones_in_disguise():
    """"doubled, then halved" is just x, and "negated, then negated" too: a held-out problem whose steps cancel
    would pass with less than the problem asks for, so none is reserved."""
    held = {p["key"]: p for p in held_out_problems() if p["level"] in NAMED_STEPS}
    assert len(held) == 2 * HELD_OUT_PER_LEVEL
    assert not {("double", "halve"), ("negate", "negate"), ("increment", "decrement")} & set(held)
    inputs = INT_INPUTS
    for key, p in held.items():
        outputs = [eval(f"lambda a: {_named_expr(key, 'a')}")(x) for x in inputs]  # noqa: S307 (our own code)
        for n in range(len(key)):
            for shorter in itertools.product(NAMED, repeat=n):
                assert outputs != [eval(f"lambda a: {_named_expr(shorter, 'a')}")(x) for x in inputs], (key, shorter)


def _wrong(problem: dict) -> str:
    """A near miss: the last constant changed by one, or for named operations the last step swapped for the next
    one in NAMED's order."""
    solution = problem["canonical_solution"]
    if problem["level"] in NAMED_STEPS:
        *first, last = problem["key"]
        names = list(NAMED)
        other = names[(names.index(last) + 1) % len(names)]
        arg = re.search(r"def \w+\((\w+)\)", problem["prompt"]).group(1)
        return f"    return {_named_expr((*first, other), arg)}\n"
    last = list(re.finditer(r"\d+", solution))[-1]
    return solution[: last.start()] + str(int(last.group()) + 1) + solution[last.end():]


def test_canonical_solutions_pass_and_wrong_ones_fail_in_the_sandbox():
    for p in held_out_problems():
        # as a model writes it: the prompt is given without its final newline
        right, wrong = ("\n" + text.rstrip() for text in (p["canonical_solution"], _wrong(p)))
        assert check_problem(p, [right, wrong], timeout_s=3.0) == [True, False], p["task_id"]


def test_pass_rates_come_from_the_harness_scorer_and_agree_with_one_program_per_run():
    """The forecast checks with the evaluation harness's scorer, on the prompt the model saw; its verdicts equal a
    single check_completion's, and leaving early, however, is a failure."""
    from collections import Counter

    from foresight.evals.sandbox import check_completion
    from foresight.scaling.capabilities import _prompt_seen

    p = held_out_problems(1)[0]
    body = "\n" + p["canonical_solution"].rstrip()
    candidates = [body, "\n" + _wrong(p).rstrip(), "\n    while True:\n        pass", "\n    return 1 / 0",
                  "\n    raise SystemExit(0)", "\n    import sys; sys.exit(0)", "\n    import os; os._exit(0)",
                  "\n    print('[true, true]')" + body, "\n    print('[true]'); import os; os._exit(0)",
                  "\n    return None", "\n    return (", body]
    stats = Counter()
    batch = check_problem(p, candidates, timeout_s=1.0, stats=stats)
    single = [check_completion(_prompt_seen(p), c, p["test"], p["entry_point"], timeout_s=1.0).passed
              for c in candidates]
    assert batch == single == [True] + [False] * 6 + [True] + [False] * 3 + [True]
    # the duplicate was checked once; the one that does not compile was never run
    assert stats == {"distinct": 11, "syntax_errors": 1, "sandbox_runs": 10}


# ----- the fit -------------------------------------------------------------------------------------------------------


def _ladder(compute, pass_rate, n=1_000_000, problems=("Exercise/L1/0", "Exercise/L1/1", "Exercise/L2/0")):
    """Synthetic pass-rate results: every problem at pass_rate(C) for a model of compute C."""
    return [{"model": f"m{i}", "compute": c,
             "problems": [{"task_id": t, "level": int(t.split("/")[1][1:]), "n": n, "c": round(pass_rate(c, t) * n)}
                          for t in problems]}
            for i, c in enumerate(compute)]


def test_fit_recovers_a_known_law():
    alpha, k = 40.0, 0.12
    compute = [1e10 * 2 ** i for i in range(6)]
    ladder = _ladder(compute, lambda c, t: math.exp(-alpha * c ** -k))
    fit = fit_capabilities(ladder, c_target=1e10 * 2 ** 5 * 10)
    assert fit["extrapolation"] == pytest.approx(10)
    for b in fit["buckets"]:
        assert b["params"]["alpha"] == pytest.approx(alpha, rel=1e-3), b["bucket"]
        assert b["params"]["k"] == pytest.approx(k, rel=1e-3)
        truth = alpha * fit["target_compute"] ** -k
        assert b["prediction"]["y"] == pytest.approx(truth, rel=1e-3)
        assert b["prediction"]["low"] <= truth <= b["prediction"]["high"]
    assert [b["bucket"] for b in fit["buckets"]] == ["level 1", "level 2", "all"]

    # the target, measured exactly on the law: zero error, inside the interval
    target = _ladder([fit["target_compute"]], lambda c, t: math.exp(-alpha * c ** -k))[0]
    rows = judge_capabilities(fit, target)
    assert all(abs(r["relative_error"]) < 1e-3 and r["inside_interval"] for r in rows)


def test_fit_uses_only_problems_every_ladder_model_solved():
    compute = [1e10 * 2 ** i for i in range(5)]
    # L1/1 is never solved by the smallest model: it leaves the fit; level 2 has no problem left and is skipped
    rate = lambda c, t: 0.0 if (t != "Exercise/L1/0" and c == compute[0]) else math.exp(-30 * c ** -0.1)
    fit = fit_capabilities(_ladder(compute, rate, n=1000), c_target=compute[-1] * 10)
    buckets = {b["bucket"]: b for b in fit["buckets"]}
    assert buckets["level 1"]["task_ids"] == ["Exercise/L1/0"] == buckets["all"]["task_ids"]
    assert "solved at least once by every ladder model" in buckets["level 2"]["skipped"]

    target = _ladder([compute[-1] * 10], lambda c, t: 0.0)[0]  # a target that solves nothing: floored, not -inf
    (row, _) = judge_capabilities(fit, target)
    assert row["actual"] == pytest.approx(-math.log(0.5 / 1_000_000))


def test_fit_refuses_with_a_clear_message():
    rate = lambda c, t: 0.5
    with pytest.raises(ForesightError, match="at least 3 ladder models; got 2"):
        fit_capabilities(_ladder([1e10, 2e10], rate), c_target=1e12)
    nothing = _ladder([1e10, 2e10, 4e10], lambda c, t: 0.0 if c == 1e10 else 0.5, n=100)
    with pytest.raises(ForesightError, match="no capability bucket could be fitted.*solved at least once by every"):
        fit_capabilities(nothing, c_target=1e12)
    worse = _ladder([1e10, 2e10, 4e10], lambda c, t: 0.5 * 1e10 / c, n=100)  # pass rates fall with compute
    with pytest.raises(ForesightError, match="does not fall"):
        fit_capabilities(worse, c_target=1e12)


# ----- the config section --------------------------------------------------------------------------------------------


def test_capabilities_section_is_validated_and_named(tmp_path):
    fc = load_forecast_config(REPO / "configs/forecast-cpu-capabilities.toml")
    assert fc.capabilities is not None and fc.capabilities.problems_per_level <= HELD_OUT_PER_LEVEL
    assert fc.target.data.corpus == "default+exercises"
    plain = load_forecast_config(REPO / "configs/forecast-cpu.toml")
    assert plain.capabilities is None and "forecast" not in dump_forecast_config(plain)  # loss-only dumps as before
    assert "[forecast.capabilities]" in dump_forecast_config(fc)

    text = (REPO / "configs/forecast-cpu-capabilities.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("samples = 100", "sampels = 100"))
    with pytest.raises(ForesightError, match=r"bad.toml: unknown key 'forecast.capabilities.sampels' "
                                             r"\(did you mean 'forecast.capabilities.samples'\?\)"):
        load_forecast_config(bad)
    bad.write_text(re.sub(r"levels = \[[0-9, ]*\]", "levels = [1, 9]", text))
    with pytest.raises(ForesightError, match=r"\[forecast.capabilities\] levels must be"):
        load_forecast_config(bad)
    bad.write_text(text.replace("[forecast.capabilities]", "[capabilities]"))
    with pytest.raises(ForesightError, match=r"\[forecast.capabilities\], not \[capabilities\]"):
        load_forecast_config(bad)
    for override, message in (("forecast.capabilities.samples=1", "samples must be at least 2"),
                              ("forecast.capabilities.problems_per_level=26", "problems_per_level must be between"),
                              ("forecast.capabilities.temperature=0", "temperature must be"),
                              ("forecast.capabilities.max_samples=50", "max_samples must be 0 or at least samples"),
                              ("forecast.capabilties.samples=4", "unknown key 'forecast.capabilties.samples'")):
        with pytest.raises(ForesightError, match=re.escape(message)):
            load_forecast_config(REPO / "configs/forecast-cpu-capabilities.toml", [override])
    # an override can also add the section to a loss-only config
    added = load_forecast_config(REPO / "configs/forecast-cpu.toml", ["forecast.capabilities.samples=8"])
    assert added.capabilities.samples == 8


def test_smaller_ladder_models_draw_more_samples():
    from foresight.scaling.capabilities import samples_for

    cc = load_forecast_config(REPO / "configs/forecast-cpu-capabilities.toml").capabilities
    cc.samples, cc.max_samples = 100, 1000
    assert samples_for(cc, 2e12, 2e12) == 100  # the largest ladder run
    assert samples_for(cc, 2e13, 2e12) == 100  # the target: never fewer than `samples`
    assert samples_for(cc, 2e12 / 30, 2e12) == round(100 * math.sqrt(30))  # 548
    assert samples_for(cc, 2e8, 2e12) == 1000  # capped
    cc.max_samples = 0
    assert samples_for(cc, 2e8, 2e12) == 100  # off: the same for every model


# ----- end to end (slow) ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_forecast_with_capabilities_end_to_end(tmp_path):
    """A miniature forecast with [forecast.capabilities] on a corpus of stdlib code and training exercises."""
    from foresight.data.corpus import read_exercises, read_stdlib
    from foresight.data.prepare import prepare

    files = tmp_path / "corpus"
    files.mkdir()
    docs = list(read_exercises(n=30_000)) + list(read_stdlib())[:300]
    for i, doc in enumerate(docs):
        (files / f"{i:05d}.txt").write_text(doc.text)
    data = prepare(tokenizer="bpe:1024", root=tmp_path / "data", text_files=str(files / "*.txt"), quiet=True)
    out = tmp_path / "fc"
    cmd = [sys.executable, "-m", "foresight", "forecast", "configs/forecast-cpu-capabilities.toml", "--out", str(out),
           "--set", f'target.data.path="{data}"', "--set", "target.data.val_tokens=32768",
           "--set", "target.train.flops=6e11", "--set", "target.model.d_model=48", "--set", "target.model.n_heads=3",
           "--set", "target.model.n_layers=2", "--set", "ladder.runs=5", "--set", "ladder.min_steps=60",
           "--set", "target.train.batch_size=16", "--set", "forecast.capabilities.problems_per_level=3",
           "--set", "forecast.capabilities.samples=16", "--set", "forecast.capabilities.levels=[1, 2]"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[9/9] verdict and report" in first.stdout
    caps = json.loads((out / "forecast.json").read_text())["capabilities"]
    assert caps["problems"] == 6 and caps["samples"] == 16
    assert "buckets" in caps or "error" in caps  # models this small may solve nothing: then the fit says why
    assert "Capability forecast" in (out / "report.html").read_text()
    # smaller ladder models draw more samples (16 x sqrt(C_largest / C), at most the config's max_samples)
    from foresight.scaling.capabilities import samples_for

    cc = load_forecast_config(REPO / "configs/forecast-cpu-capabilities.toml",
                              ["forecast.capabilities.samples=16"]).capabilities
    runs = json.loads((out / "plan.json").read_text())["runs"]
    largest = max(run["compute"] for run in runs)
    drawn = []
    for run in runs:
        measured = json.loads((out / "capabilities" / "ladder" / f"{run['name']}.json").read_text())
        assert [r["n"] for r in measured["problems"]] == [samples_for(cc, run["compute"], largest)] * 6
        drawn.append(measured["problems"][0]["n"])
    assert min(drawn) == 16 and max(drawn) > 16
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("(done, skipped)") == 8
