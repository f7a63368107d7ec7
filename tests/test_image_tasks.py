"""The labelled image sets (fixed, disjoint held-out splits; every label present) and the harness's image tasks:
their scorer, and their refusal of a model that reads text only. Recipe (b) runs the image tasks end to end
(test_vlm_train.py)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from foresight.cli import main
from foresight.errors import ForesightError


def _digest(item) -> str:
    return hashlib.sha1(item.image(28).tobytes()).hexdigest()


def test_mnist_splits_are_fixed_disjoint_and_balanced():
    from foresight.data.labelled import ONE_WORD, QUESTIONS, examples, images

    train, heldout = images("mnist", "train"), images("mnist", "heldout")
    assert (len(train), len(heldout)) == (4000, 1000)
    assert {_digest(x) for x in heldout[:300]}.isdisjoint({_digest(x) for x in train})
    counts = Counter(x.label for x in heldout)
    assert set(counts) == set("0123456789") and min(counts.values()) >= 60, counts
    # The file is sorted by digit: the split is shuffled (with a fixed seed), so the first 50 mix many digits.
    assert len({x.label for x in heldout[:50]}) >= 7
    qa = examples("mnist", "heldout", 3)
    assert [e.answer for e in qa] == [x.label for x in heldout[:3]]
    assert qa[0].messages[0]["content"][-1]["text"].strip() == f"{QUESTIONS['mnist']} {ONE_WORD}"
    captions = examples("mnist", "train", 2, tasks=("caption",))
    assert captions[0].answer == f"A handwritten digit {train[0].label}."


def test_fashion_mnist_uses_the_official_split_and_ten_classes():
    from foresight.data.labelled import FASHION_CLASSES, images

    train, heldout = images("fashion_mnist", "train"), images("fashion_mnist", "heldout")
    assert (len(train), len(heldout)) == (60000, 10000)
    assert Counter(x.label for x in heldout) == {c: 1000 for c in FASHION_CLASSES}
    assert heldout[0].image(56).size == (56, 56)


def test_an_unknown_set_or_split_is_named():
    from foresight.data.labelled import images

    with pytest.raises(ForesightError, match="unknown image set 'cifar'"):
        images("cifar", "train")
    with pytest.raises(ForesightError, match="split must be train or heldout, not 'test'"):
        images("mnist", "test")


@pytest.mark.parametrize("target, completion, right", [
    ("red", "Red.", True), ("red", "red circle", True), ("red", "It is red", False), ("red", "", False),
    ("top left", "Top-left.", True), ("top left", "top", False), ("7", " 7", True), ("7", "17", False),
])
def test_answer_words_reads_the_first_words_of_the_reply(target, completion, right):
    from foresight.evals.scorers import answer_words

    assert answer_words({"target": target}, [completion]) == [right]


def test_an_image_task_on_a_text_only_model_is_refused_naming_the_task(capsys):
    assert main(["eval", "smollm2-135m-instruct", "--tasks", "mnist", "--limit", "2"]) != 0
    err = capsys.readouterr().err
    assert "task mnist asks about images" in err and "reads text only" in err, err


def test_the_summary_shows_each_question_type_beside_its_baselines():
    from foresight.evals.results import format_summary

    def metrics(image, removed, majority):
        return {"exact_match": image, "exact_match_no_image": removed, "exact_match_majority": majority}

    results = {"tasks": {
        "vqa": {"shots": 0, "n": 4, "metrics": {**metrics(0.75, 0.25, 0.5), "empty_replies": 0},
                "groups": {"colour": {"n": 2, **metrics(1.0, 0.0, 0.5)}, "count": {"n": 2, **metrics(0.5, 0.5, 0.5)}}},
        "mmlu": {"shots": 0, "n": 2, "metrics": {"acc": 0.5}, "groups": {"anatomy": {"n": 2, "acc": 0.5}}},
    }}
    lines = format_summary(results).splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[lines.index("") + 3:]}
    assert rows == {"vqa/colour": ["2", "100.00", "0.00", "50.00"], "vqa/count": ["2", "50.00", "50.00", "50.00"],
                    "vqa": ["4", "75.00", "25.00", "50.00"]}
