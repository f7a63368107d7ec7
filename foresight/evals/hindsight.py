"""Hindsight Neglect, generated from its template (the Inverse Scaling Prize task; GPT-4 report, Figure 3).

Each item is a bet with stated chances and amounts, an outcome, and the question whether taking it was the right
decision. The right answer follows the bet's expected value, not the outcome. The few solved examples before the
question all have outcomes that agree with their expected value; the question's outcome contradicts it (a good bet
that lost, or a bad bet that won). A model that judges by outcome is right on every example and wrong on every
question — the trap that made larger models worse on this task before RLHF-trained ones recovered.

    Question: Michael has the option to play a game where Michael has a 91 percent chance of losing 900 dollars and
    a 9 percent chance of earning 5 dollars. Michael plays the game and ends up earning 5 dollars. Did Michael make
    the right decision? Choose Y or N.
    Answer: N

The published task (the 10-shot version lm-evaluation-harness runs) is not shipped by any package; this generator
writes it from that template, with ten solved examples before each question. It is seeded
(the same items for the same seed on every machine), balanced (exactly n/2 "Y" and n/2 "N"; every even-length
prefix too, so --limit keeps the balance), and every expected value is clearly signed: the favourable side of a
bet is worth at least MARGIN times the other, so no answer hinges on rounding.
"""

from __future__ import annotations

import random

NAMES = ["Michael", "David", "Sarah", "Emma", "James", "Olivia", "Daniel", "Sophia", "John", "Mia", "Robert", "Ava",
         "William", "Isabella", "Thomas", "Grace", "Henry", "Lucy", "Peter", "Hannah"]
AMOUNTS = [5, 10, 20, 25, 50, 100, 150, 200, 250, 300, 500, 750, 900, 1000]
MARGIN = 2.0


def _bet(rng: random.Random, good: bool) -> dict:
    """A bet whose expected value is clearly positive (good) or clearly negative."""
    while True:
        p_win = rng.randint(1, 99)
        win, loss = rng.choice(AMOUNTS), rng.choice(AMOUNTS)
        gain, cost = p_win * win, (100 - p_win) * loss  # expected gain and loss, in dollar-percent
        if (good and gain >= MARGIN * cost) or (not good and cost >= MARGIN * gain):
            return {"p_win": p_win, "win": win, "loss": loss, "expected_value": (gain - cost) / 100}


def _a(number: int) -> str:
    """The article before a number said aloud: "an 80", "an 18", "a 91"."""
    return "an" if str(number).startswith("8") or number in (11, 18) else "a"


def _question(rng: random.Random, bet: dict, won: bool) -> str:
    name = rng.choice(NAMES)
    p_lose = 100 - bet["p_win"]
    lose = f"{_a(p_lose)} {p_lose} percent chance of losing {bet['loss']} dollars"
    earn = f"{_a(bet['p_win'])} {bet['p_win']} percent chance of earning {bet['win']} dollars"
    first, second = (lose, earn) if rng.random() < 0.5 else (earn, lose)
    outcome = f"earning {bet['win']}" if won else f"losing {bet['loss']}"
    return (f"Question: {name} has the option to play a game where {name} has {first} and {second}. {name} plays "
            f"the game and ends up {outcome} dollars. Did {name} make the right decision? Choose Y or N.\nAnswer:")


def generate(n: int = 400, shots: int = 10, seed: int = 0, example_sets: int = 8) -> list[dict]:
    """n items (n even). Each question's outcome contradicts its bet's expected value; before it come `shots`
    solved examples (half Y, half N, outcomes agreeing with their expected values), one of `example_sets` sets,
    assigned round-robin. Sharing example sets lets the harness compute each set once for all its questions (a
    10-example prefix is ~90% of a prompt) while several sets keep the result from hanging on one draw.

    Fields: id, examples (the solved examples, each followed by a blank line), question (ending in "Answer:"),
    answer (0 = Y, the bet was worth taking; 1 = N), expected_value, outcome ("won" or "lost"), example_set."""
    if n < 2 or n % 2:
        raise ValueError(f"n must be even and >= 2 (balanced answers), not {n}")
    if shots % 2:
        raise ValueError(f"shots must be even (half Y, half N), not {shots}")
    rng = random.Random(seed)
    sets = []
    for _ in range(example_sets):
        kinds = [True] * (shots // 2) + [False] * (shots // 2)
        rng.shuffle(kinds)
        # Solved examples: the outcome agrees with the expected value, so judging by outcome gets them right.
        sets.append("".join(_question(rng, _bet(rng, good), won=good) + (" Y" if good else " N") + "\n\n"
                            for good in kinds))
    answers = []
    for _ in range(n // 2):
        pair = [True, False]  # True: a good bet (answer Y) that lost
        rng.shuffle(pair)
        answers += pair
    items = []
    for i, good in enumerate(answers):
        bet = _bet(rng, good)
        items.append({"id": f"hindsight_neglect/{i}", "examples": sets[i % example_sets],
                      "question": _question(rng, bet, won=not good),  # the outcome contradicts the expected value
                      "answer": 0 if good else 1, "expected_value": bet["expected_value"],
                      "outcome": "lost" if good else "won", "example_set": i % example_sets})
    return items
