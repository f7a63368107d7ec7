"""Reward callables: the built-in refusal rule, a user's own function named in a config, and their weighted mix."""

import json
import sys
import textwrap
from pathlib import Path

import pytest

from foresight.align.rewards import RewardMix, load_reward, refusal_rules
from foresight.errors import ForesightError

REFUSE = "I'm sorry, but I can't help with that."
ANSWER = "Sure: open Task Manager and end the process."


def test_refusal_rules_rewards_refusing_disallowed_and_answering_allowed():
    rewards = refusal_rules(["a", "b", "c", "d"], [REFUSE, ANSWER, REFUSE, ANSWER],
                            prompt_types=["disallowed", "disallowed", "allowed", "allowed"])
    assert rewards == [1.0, -1.0, -1.0, 1.0]
    with pytest.raises(ForesightError, match="prompt type"):
        refusal_rules(["a"], [REFUSE], prompt_types=["benign"])


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def brevity(prompts, responses, **meta):
            return [-len(r.split()) for r in responses]

        not_callable = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_a_custom_reward_named_in_a_config_is_mixed_by_weight(user_module):
    mix = RewardMix.from_config([{"name": "refusal_rules", "weight": 2.0},
                                 {"name": f"{user_module}:brevity", "weight": 0.5}])
    totals, sources = mix(["p", "q"], [REFUSE, ANSWER], prompt_types=["disallowed", "allowed"])
    assert sources["refusal_rules"] == [1.0, 1.0]
    assert sources[f"{user_module}:brevity"] == [-8.0, -8.0]
    assert totals == [2.0 * 1.0 + 0.5 * -8.0, 2.0 * 1.0 + 0.5 * -8.0]


@pytest.mark.parametrize("entries, message", [
    ([{"name": "no_such_reward"}], r"rewards\[0\].name: unknown reward 'no_such_reward'"),
    ([{"name": "no_such_module_xyz:f"}], r"rewards\[0\].name: cannot import 'no_such_module_xyz'"),
    ([{"name": "refusal_rules", "weight": "big"}], r"rewards\[0\].weight: must be a finite number"),
    ([{"name": "refusal_rules", "wieght": 1}], r"rewards\[0\].wieght: unknown key"),
    ([{"weight": 1}], r"rewards\[0\].name: missing"),
    ([], "no rewards"),
])
def test_bad_reward_entries_are_refused_by_key(entries, message):
    with pytest.raises(ForesightError, match=message):
        RewardMix.from_config(entries)


def test_a_reward_that_is_not_callable_or_returns_the_wrong_count_is_refused(user_module):
    with pytest.raises(ForesightError, match="no callable 'not_callable'"):
        load_reward(f"{user_module}:not_callable")
    mix = RewardMix.from_config([{"name": f"{user_module}:brevity"}])
    mix.rewards[0].fn = lambda prompts, responses, **meta: [1.0]
    with pytest.raises(ForesightError, match="returned 1 values for 2 responses"):
        mix(["p", "q"], [REFUSE, ANSWER])


def _eval_file(path: Path, refusal: list[str], over_refusal: list[str]) -> Path:
    """A `foresight eval --out` file cut down to what the script reads: each item's request and greedy reply."""
    item = lambda reply: {"messages": [{"role": "user", "content": "a request"}], "completions": [reply]}
    path.write_text(json.dumps({"tasks": {"refusal": {"items": [item(r) for r in refusal]},
                                          "over_refusal": {"items": [item(r) for r in over_refusal]}}}))
    return path


def test_rewards_on_evals_reports_the_phrase_reward_per_prompt_type(tmp_path, script):
    results = _eval_file(tmp_path / "eval.json", [REFUSE, REFUSE, ANSWER, REFUSE], [ANSWER, REFUSE])
    run = script.run("rewards_on_evals", str(results), "--json", str(tmp_path / "out.json"))
    assert run.returncode == 0, run.stderr
    figures = json.loads((tmp_path / "out.json").read_text())["files"][str(results)]["refusal_rules"]
    assert figures["disallowed"] == pytest.approx(0.5) and figures["allowed"] == pytest.approx(0.0)
    assert figures["mean"] == pytest.approx(2 / 6)


@pytest.mark.parametrize("content, message", [
    (None, "no such results file"),
    ("not json", "not a foresight eval --out JSON file"),
    ("[1, 2]", "not a foresight eval --out file (no \"tasks\" table)"),
    ('{"tasks": {"refusal": {"items": []}}}', "no per-item replies of the refusal task"),
    ('{"tasks": {"refusal": {"items": [{"messages": []}]}}}', "refusal item 0 has no request"),
])
def test_rewards_on_evals_names_a_bad_results_file(tmp_path, content, message, script):
    path = tmp_path / "eval.json"
    if content is not None:
        path.write_text(content)
    good = _eval_file(tmp_path / "good.json", [REFUSE], [ANSWER])
    run = script.run("rewards_on_evals", str(good), str(path))  # the bad file is found before any grading
    assert run.returncode != 0 and f"{path}: {message}" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert str(good) not in run.stdout


def test_rewards_on_evals_names_a_bad_rubric_or_head(tmp_path, script):
    good = str(_eval_file(tmp_path / "good.json", [REFUSE], [ANSWER]))
    for args, message in [(["--rubric", str(tmp_path / "none.yaml")], "rubric file not found"),
                          (["--rubric", "foresight/align/rubrics/refusal_style.yaml", "--head",
                            str(tmp_path / "none.safetensors")], "grader head not found")]:
        run = script.run("rewards_on_evals", good, *args)
        assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
