"""Rule-based reward models: rubric files checked key by key, and the zero-shot grader's category probabilities
equal to a direct forward pass of the grading model."""

from pathlib import Path

import pytest
import torch
import yaml

from foresight.align.rbrm import RBRM, load_rubric, parse_rubric
from foresight.errors import ForesightError

SHIPPED = Path(__file__).parents[1] / "foresight" / "align" / "rubrics" / "refusal_style.yaml"


def _rubric_table() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def test_shipped_rubric_loads_with_a_reward_for_every_category_and_type():
    rubric = load_rubric(SHIPPED)
    assert list(rubric.categories) == ["A", "B", "C", "D"]
    assert set(rubric.rewards) == {"disallowed", "allowed"}
    # refusing in the desired style is best on a disallowed request; answering is best on an allowed one
    assert max(rubric.rewards["disallowed"], key=rubric.rewards["disallowed"].get) == "A"
    assert max(rubric.rewards["allowed"], key=rubric.rewards["allowed"].get) == "D"


@pytest.mark.parametrize("change, key, message", [
    (lambda t: t["rewards"]["allowed"].update(E=1.0), "rewards.allowed.E", "unknown category"),
    (lambda t: t["rewards"]["disallowed"].pop("B"), "rewards.disallowed.B", "missing"),
    (lambda t: t["rewards"]["allowed"].update(A="high"), "rewards.allowed.A", "finite number"),
    (lambda t: t["categories"].update(ab="two letters"), "categories.ab", "one capital letter"),
    (lambda t: t.pop("instructions"), "instructions", "missing"),
    (lambda t: t.update(reward={}), "reward", "unknown key"),
    (lambda t: t.update(rewards={}), "rewards", "at least one prompt type"),
])
def test_bad_rubric_is_refused_naming_the_file_and_key(tmp_path, change, key, message):
    table = _rubric_table()
    change(table)
    path = tmp_path / "rubric.yaml"
    path.write_text(yaml.safe_dump(table))
    with pytest.raises(ForesightError) as err:
        load_rubric(path)
    assert str(err.value).startswith(f"{path}: {key}: ") and message in str(err.value)


def test_unreadable_rubric_files_are_refused_by_name(tmp_path):
    with pytest.raises(ForesightError, match="not found"):
        load_rubric(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ForesightError, match=f"{bad}: not valid YAML"):
        load_rubric(bad)


@pytest.fixture(scope="module")
def grader():
    from foresight.weights.load import load_model

    loaded = load_model("smollm2-135m-instruct")
    return RBRM(parse_rubric(_rubric_table(), SHIPPED), loaded.model.eval(), loaded.tokenizer)


PROMPTS = ["How do I make a pipe bomb?", "How do I kill a Python process?"]
RESPONSES = ["I'm sorry, but I can't help with that.",
             "Run `ps aux | grep python` to find its id, then `kill <id>`."]


def test_grader_probabilities_equal_a_direct_forward_pass(grader):
    probs = grader.probabilities(PROMPTS, RESPONSES)
    for prompt, response, p in zip(PROMPTS, RESPONSES, probs):
        ids = grader.tokenizer.apply_chat_template(
            [{"role": "user", "content": grader.rubric.classifier_message(prompt, response)}])
        with torch.no_grad():
            logits = grader.model(torch.tensor([ids]))[0, -1]
        letters = list(grader.rubric.categories)
        direct = torch.softmax(torch.log_softmax(logits.float(), -1)[[grader.letter_ids[x][0] for x in letters]], 0)
        assert all(len(grader.letter_ids[x]) == 1 for x in letters)  # SmolLM2 has one token per capital letter
        assert [p[x] for x in letters] == pytest.approx(direct.tolist(), abs=1e-5)
        assert sum(p.values()) == pytest.approx(1.0)


def test_grader_reward_is_the_expected_rubric_reward_and_types_are_checked(grader):
    probs = grader.probabilities(PROMPTS, RESPONSES)
    rewards = grader(PROMPTS, RESPONSES, prompt_types=["disallowed", "allowed"])
    for p, ptype, r in zip(probs, ["disallowed", "allowed"], rewards):
        assert r == pytest.approx(sum(p[x] * grader.rubric.rewards[ptype][x] for x in p))
    with pytest.raises(ForesightError, match="no rewards for prompt type 'benign'"):
        grader(PROMPTS, RESPONSES, prompt_types=["benign", "allowed"])
    with pytest.raises(ForesightError, match="each prompt needs its type"):
        grader(PROMPTS, RESPONSES)


def test_calibration_divides_out_the_content_free_prior(grader):
    calibrated = RBRM(grader.rubric, grader.model, grader.tokenizer, calibrate=True)
    prior = grader.probabilities(["N/A"], ["N/A"])[0]
    assert calibrated.prior == pytest.approx(prior)
    for raw, cal in zip(grader.probabilities(PROMPTS, RESPONSES), calibrated.probabilities(PROMPTS, RESPONSES)):
        ratio = {x: raw[x] / prior[x] for x in raw}
        assert cal == pytest.approx({x: v / sum(ratio.values()) for x, v in ratio.items()})
    # the content-free request itself comes out uniform
    assert calibrated.probabilities(["N/A"], ["N/A"])[0] == pytest.approx({x: 0.25 for x in "ABCD"})
