"""Reward callables: the built-in refusal rule, a user's own function named in a config, and their weighted mix."""

import sys
import textwrap

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
