"""The behaviour data: deterministic, held-out splits disjoint from train, counts in range, and every reply right by
construction (steerability replies obey their rule and rejected ones break it; refusals read as refusals to the
judge and helpful answers do not)."""

from collections import Counter

import pytest

from foresight.align import prompts as P
from foresight.align.judge import is_refusal
from foresight.align.rules import KINDS, parse_rule
from foresight.errors import ForesightError

SPLITS = ("train", "heldout")
BUILDERS = (P.steerability_prompts, P.refusal_prompts, P.over_refusal_prompts, P.behaviour_conversations,
            P.behaviour_pairs)


@pytest.fixture(scope="module")
def data():
    return {(f.__name__, s): f(s) for f in BUILDERS for s in SPLITS}


def test_same_items_on_every_call(data):
    for (name, split), items in data.items():
        assert getattr(P, name)(split) == items, name


def test_ids_unique_across_splits(data):
    for f in BUILDERS:
        ids = [item["id"] for s in SPLITS for item in data[f.__name__, s]]
        assert len(ids) == len(set(ids)), f.__name__


def test_unknown_split_refused():
    with pytest.raises(ForesightError, match="split"):
        P.refusal_prompts("test")


# --- steerability ------------------------------------------------------------------------------------------------

def test_steerability_counts_and_kinds(data):
    held = Counter(item["kind"] for item in data["steerability_prompts", "heldout"])
    train = Counter(item["kind"] for item in data["steerability_prompts", "train"])
    assert set(held) == set(train) == set(KINDS)
    assert all(20 <= n <= 30 for n in held.values()), held
    assert 180 <= sum(held.values()) <= 240
    assert 300 <= sum(train.values()) <= 1500
    assert all(n >= 50 for n in train.values()), train


def test_steerability_items_well_formed(data):
    for split in SPLITS:
        for item in data["steerability_prompts", split]:
            rule = parse_rule(item["rule"], item["id"])
            assert rule.kind == item["kind"]
            assert item["system"].endswith(rule.system_message())
            assert item["user"].endswith("?")


def test_steerability_heldout_questions_and_parameters_disjoint_from_train(data):
    def questions(split):
        return {item["user"] for item in data["steerability_prompts", split]}

    def params(split):
        values = set()
        for item in data["steerability_prompts", split]:
            rule = {k: v for k, v in item["rule"].items() if k not in ("keywords",)}
            if len(rule) > 1:  # kinds with parameters
                values.add(repr(sorted(rule.items())))
        return values

    assert questions("heldout") and not questions("heldout") & questions("train")
    assert params("heldout") and not params("heldout") & params("train")
    for kind in ("json_keys", "max_words", "starts_with", "ends_with", "avoid_topic"):
        for split in SPLITS:  # each parameterised kind draws on its split's bank, with variety
            used = {repr(i["rule"]) for i in data["steerability_prompts", split] if i["kind"] == kind}
            assert len(used) >= 3, (kind, split)


def test_avoid_topic_about_half_on_topic(data):
    for split in SPLITS:
        items = [i for i in data["steerability_prompts", split] if i["kind"] == "avoid_topic"]
        on = sum(i["topic"] == i["rule"]["topic"] for i in items)
        assert abs(on - (len(items) - on)) <= 1, (split, on, len(items))


def test_steerability_replies_obey_and_rejected_replies_break_the_rule(data):
    for split in SPLITS:
        for item in data["steerability_prompts", split]:
            rule = parse_rule(item["rule"], item["id"])
            reply = P.steerability_reply(item)
            assert rule.check(reply), (item["id"], reply)
        rules = {f"pair-{i['id']}": parse_rule(i["rule"]) for i in data["steerability_prompts", split]}
        for pair in data["behaviour_pairs", split]:
            if pair["source"] == "steerability_pair":
                rule = rules[pair["id"]]
                assert rule.check(pair["chosen"]) and not rule.check(pair["rejected"]), pair["id"]


def test_avoid_topic_replies_decline_only_on_topic(data):
    for split in SPLITS:
        for item in data["steerability_prompts", split]:
            if item["kind"] == "avoid_topic":
                declined = is_refusal(P.steerability_reply(item))
                assert declined == (item["topic"] == item["rule"]["topic"]), item["id"]


def test_spell_numbers():
    assert P.number_words(8849) == "eight thousand eight hundred and forty-nine"
    assert P.number_words(100_000) == "one hundred thousand"
    assert P.ordinal_words(21) == "twenty-first"
    assert P.spell_numbers("On 9 November 1989, 15% of 1,500 people paid 3.5 euros in 2006 at 37 °C.") == (
        "On the ninth of November nineteen eighty-nine, fifteen percent of one thousand five hundred people paid "
        "three point five euros in two thousand and six at thirty-seven degrees Celsius.")
    assert P.spell_numbers("1905 and 1800") == "Nineteen oh five and eighteen hundred"
    assert P.spell_numbers("H2O at 221B") == "H2O at 221B"  # digits inside words are not numbers


# --- refusal and over-refusal ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, lo_held, hi_held, lo_train, hi_train, min_categories", [
    ("refusal_prompts", 100, 150, 200, 600, 8),
    ("over_refusal_prompts", 100, 150, 200, 600, 7),
])
def test_safety_counts_and_categories(data, name, lo_held, hi_held, lo_train, hi_train, min_categories):
    held, train = data[name, "heldout"], data[name, "train"]
    assert lo_held <= len(held) <= hi_held
    assert lo_train <= len(train) <= hi_train
    categories = {i["category"] for i in train}
    assert len(categories) >= min_categories
    assert {i["category"] for i in held} == categories


@pytest.mark.parametrize("name", ["refusal_prompts", "over_refusal_prompts"])
def test_safety_split_by_template_and_slot(data, name):
    for key in ("template", "slot", "user"):
        held = {i[key] for i in data[name, "heldout"]}
        train = {i[key] for i in data[name, "train"]}
        assert held and train and not held & train, key
    for split in SPLITS:
        users = [i["user"] for i in data[name, split]]
        assert len(users) == len(set(users))
        assert all("{" not in u and "}" not in u for u in users)


def test_refusal_replies_are_refusals_in_the_desired_style(data):
    for decline in P.REFUSAL_STYLE["declines"]:
        assert is_refusal(decline), decline
    replies = set()
    for split in SPLITS:
        for item in data["refusal_prompts", split]:
            reply = P.refusal_reply(item)
            replies.add(reply)
            assert is_refusal(reply), reply
            assert len(reply.split()) <= 50  # brief: no lecture
            if item["category"] == "self_harm":
                assert "crisis line" in reply
            opener = P.compliance_opener(item)
            assert not is_refusal(opener) and opener.endswith(":"), opener  # an opener with nothing after it
    assert len({r.split(".")[0] for r in replies}) == len(P.REFUSAL_STYLE["declines"])  # varied phrasings


def test_over_refusal_answers_are_helpful_not_refusals(data):
    for split in SPLITS:
        for item in data["over_refusal_prompts", split]:
            assert not is_refusal(item["reply"]), item["reply"]
            assert 5 <= len(item["reply"].split()) <= 80, item["id"]
            assert is_refusal(P.needless_refusal(item))


# --- demonstrations and pairs ------------------------------------------------------------------------------------

def test_conversations_end_with_the_assistant(data):
    for split in SPLITS:
        conversations = data["behaviour_conversations", split]
        assert Counter(c["source"] for c in conversations) == {
            "steerability": len(data["steerability_prompts", split]),
            "refusal": len(data["refusal_prompts", split]),
            "over_refusal": len(data["over_refusal_prompts", split])}
        for conv in conversations:
            roles = [m["role"] for m in conv["messages"]]
            assert roles == (["system", "user", "assistant"] if conv["source"] == "steerability"
                             else ["user", "assistant"]), conv["id"]
            assert all(m["content"].strip() for m in conv["messages"])
            last = conv["messages"][-1]["content"]
            assert is_refusal(last) == (conv["source"] == "refusal") or conv["source"] == "steerability"


def test_pairs_have_a_known_winner(data):
    for split in SPLITS:
        pairs = data["behaviour_pairs", split]
        assert {p["source"] for p in pairs} == {"steerability_pair", "refusal_pair", "over_refusal_pair"}
        for pair in pairs:
            assert pair["chosen"].strip() and pair["rejected"].strip()
            assert pair["chosen"] != pair["rejected"], pair["id"]
            assert pair["messages"][-1]["role"] == "user"
            if pair["source"] == "refusal_pair":
                assert is_refusal(pair["chosen"]) and not is_refusal(pair["rejected"])
            if pair["source"] == "over_refusal_pair":
                assert not is_refusal(pair["chosen"]) and is_refusal(pair["rejected"])


def test_rl_prompts_are_new_phrasings_of_train_goals_only(data):
    """PPO's "behaviour_rl" requests: every template new (no template of either split, of any category), every slot
    a train slot, so no request is a held-out one and none is a request SFT trained on."""
    from foresight.align import prompt_bank as bank

    split_templates = set()
    for category, templates in bank.OVER_REFUSAL_TEMPLATES.items():
        split_templates |= set(templates)
    for spec in bank.REFUSAL_CATEGORIES.values():
        split_templates |= set(spec["templates"])
    rl_templates = [t for d in (bank.RL_REFUSAL_TEMPLATES, bank.RL_OVER_REFUSAL_TEMPLATES) for v in d.values()
                    for t in v]
    assert not set(rl_templates) & split_templates and all(t.count("{x}") == 1 for t in rl_templates)
    assert set(bank.RL_OVER_REFUSAL_TEMPLATES) == set(bank.OVER_REFUSAL_TEMPLATES)
    assert set(bank.RL_REFUSAL_TEMPLATES) == set(bank.REFUSAL_CATEGORIES)
    rl = P.rl_prompts()
    train = {i["user"] for i in P.refusal_prompts("train") + P.over_refusal_prompts("train")}
    held = {i["user"] for i in P.refusal_prompts("heldout") + P.over_refusal_prompts("heldout")}
    texts = [i["user"] for i in rl]
    assert len(set(texts)) == len(texts) and not set(texts) & (train | held)
    # the slots are the train split's: each RL request, with its template's words removed, is a train slot
    train_slots = {i["slot"] for i in P.refusal_prompts("train") + P.over_refusal_prompts("train")}
    held_slots = {i["slot"] for i in P.refusal_prompts("heldout") + P.over_refusal_prompts("heldout")}
    rl_slots = {f"{i['category']}/s{i['id'].rsplit('-s', 1)[1]}" for i in rl if not _rl_only(i)}
    assert rl_slots <= train_slots and not rl_slots & held_slots
    slots_per_category = Counter(s.split("/")[0] for s in train_slots)
    for category, extra in bank.RL_OVER_REFUSAL_SLOTS.items():
        slots_per_category[category] += len(extra)
    for kind, templates in (("refusal", bank.RL_REFUSAL_TEMPLATES), ("over_refusal", bank.RL_OVER_REFUSAL_TEMPLATES)):
        assert sum(i["kind"] == kind for i in rl) == sum(len(t) * slots_per_category[c] for c, t in templates.items())


def _rl_only(item: dict) -> bool:
    return item["id"].rsplit("-", 1)[1].startswith("n")  # "rl-allow-figurative-t2-n5": RL-only slot 5


def test_rl_only_slots_are_new_asks_not_train_or_heldout_ones(data):
    """The allowed asks written for PPO only hold no train or held-out slot's words (a held-out ask inside one
    would leak the test set into training), and they come after every other RL request."""
    from foresight.align import prompt_bank as bank

    split_slots = [entry[0].lower() for entries in P._OVER_REFUSAL_SLOTS.values() for entry in entries]
    extra = [s.lower() for slots in bank.RL_OVER_REFUSAL_SLOTS.values() for s in slots]
    assert len(set(extra)) == len(extra) and set(bank.RL_OVER_REFUSAL_SLOTS) <= set(bank.OVER_REFUSAL_TEMPLATES)
    for slot in extra:
        assert not any(known in slot or slot in known for known in split_slots), slot
    rl = P.rl_prompts()
    first_extra = min(n for n, i in enumerate(rl) if _rl_only(i))
    assert all(_rl_only(i) for i in rl[first_extra:]) and len(rl) - first_extra == sum(
        len(slots) * len(bank.RL_OVER_REFUSAL_TEMPLATES[c]) for c, slots in bank.RL_OVER_REFUSAL_SLOTS.items())


@pytest.mark.parametrize("args, message", [
    (["missing.toml", "--out", "x.jsonl"], "error: config file not found: missing.toml"),
    (["configs/align-ppo-smollm2.toml", "--out", "x.jsonl", "--validation-share", "1.5"],
     "--validation-share must be in [0, 1)"),
    (["configs/align-ppo-smollm2.toml", "--out", "x.jsonl", "--keep-solved", "allowed=4,x"], "give N, or TYPE=N pairs"),
    (["configs/align-ppo-smollm2.toml", "--out", "x.jsonl", "--keep-solved", "-1"], "counts must be 0 or more"),
])
def test_hard_prompts_script_names_bad_input(args, message, script):
    run = script.run("hard_prompts", *args)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_hard_prompts_keeps_every_failing_prompt_and_a_seeded_count_of_solved_ones_per_type(script):
    hard = script("hard_prompts")
    ptypes = ["allowed"] * 6 + ["disallowed"] * 6
    scores = {i: [0.5, -0.5 if i in (0, 7) else 0.9] for i in range(12)}  # 0 and 7 failed one sample
    failed, solved = hard.select(scores, ptypes, 0.0, {"*": 2}, seed=0)
    assert failed == [0, 7] and sorted(ptypes[i] for i in solved) == ["allowed"] * 2 + ["disallowed"] * 2
    assert hard.select(scores, ptypes, 0.0, {"*": 2}, seed=0) == (failed, solved)  # seeded
    # one count per type; a type left out keeps none, and the shared count's draw is the same as before
    failed, per_type = hard.select(scores, ptypes, 0.0, {"allowed": 2, "disallowed": 5}, seed=0)
    assert per_type[:2] == solved[:2] and len(per_type) == 7 and not set(per_type) & {0, 7}
    assert hard.select(scores, ptypes, 0.0, {"disallowed": 1}, seed=0)[1][0] >= 6
    assert hard.keep_solved_counts("40") == {"*": 40}
    assert hard.keep_solved_counts("allowed=40, disallowed=60") == {"allowed": 40, "disallowed": 60}
    with pytest.raises(SystemExit, match="no prompts of type 'alowed'"):
        hard.check_types({"alowed": 3}, ptypes)
