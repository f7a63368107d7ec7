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

The published task is not shipped by any package; this generator writes it from that template. It is seeded
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


def _question(rng: random.Random, bet: dict, won: bool) -> str:
    name = rng.choice(NAMES)
    lose = f"a {100 - bet['p_win']} percent chance of losing {bet['loss']} dollars"
    earn = f"a {bet['p_win']} percent chance of earning {bet['win']} dollars"
    first, second = (lose, earn) if rng.random() < 0.5 else (earn, lose)
    outcome = f"earning {bet['win']}" if won else f"losing {bet['loss']}"
    return (f"Question: {name} has the option to play a game where {name} has {first} and {second}. {name} plays "
            f"the game and ends up {outcome} dollars. Did {name} make the right decision? Choose Y or N.\nAnswer:")


def generate(n: int = 400, shots: int = 10, seed: int = 0) -> list[dict]:
    """n items (n even), each with `shots` solved examples (half Y, half N; outcomes agreeing with expected value)
    before a question whose outcome contradicts it. Fields: id, text (the prompt, ending in "Answer:"), answer
    (0 = Y, the bet was worth taking; 1 = N), expected_value, outcome ("won" or "lost")."""
    if n < 2 or n % 2:
        raise ValueError(f"n must be even and >= 2 (balanced answers), not {n}")
    if shots % 2:
        raise ValueError(f"shots must be even (half Y, half N), not {shots}")
    rng = random.Random(seed)
    answers = []
    for _ in range(n // 2):
        pair = [True, False]  # True: a good bet (answer Y) that lost
        rng.shuffle(pair)
        answers += pair
    items = []
    for i, good in enumerate(answers):
        examples = [True] * (shots // 2) + [False] * (shots // 2)
        rng.shuffle(examples)
        parts = []
        for ex_good in examples:  # solved examples: the outcome agrees with the expected value
            parts.append(_question(rng, _bet(rng, ex_good), won=ex_good) + (" Y" if ex_good else " N"))
        bet = _bet(rng, good)
        parts.append(_question(rng, bet, won=not good))  # the outcome contradicts the expected value
        items.append({"id": f"hindsight_neglect/{i}", "text": "\n\n".join(parts), "answer": 0 if good else 1,
                      "expected_value": bet["expected_value"], "outcome": "lost" if good else "won"})
    return items
