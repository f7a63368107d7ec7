"""PPO end to end on a tiny model: rollouts through the serving engine, a reward callable named in the config, the
score rising over iterations, exact resume, and config errors that name the key."""

import json
import shutil
import sys
import textwrap

import pytest
import torch

from foresight.align.config import PPOConfig
from foresight.align.ppo import train_ppo
from foresight.config import config_from_dict
from foresight.errors import ForesightError
from tests.test_align_train import _tiny_base, _write_jsonl


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    # The share of the reply's characters that are the letter "e": something a random policy can learn fast.
    (tmp_path / "ppo_test_rewards.py").write_text(textwrap.dedent("""
        def letter_e(prompts, responses, **meta):
            return [r.count("e") / max(len(r), 1) for r in responses]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "ppo_test_rewards:letter_e"
    sys.modules.pop("ppo_test_rewards", None)


def _settings(tmp_path, reward: str) -> dict:
    topics = ["cats", "rain", "maps", "tea", "ships", "clocks", "bread", "stars"]
    prompts = _write_jsonl(tmp_path / "prompts.jsonl", [
        {"messages": [{"role": "user", "content": f"Tell me about {t}."}], "type": "allowed" if i % 2 else
         "disallowed"} for i, t in enumerate(topics)])
    return {"base": str(_tiny_base(tmp_path)), "prompts": {"source": prompts, "probe": 4},
            "rewards": [{"name": reward, "weight": 10.0}],
            "train": {"lr": 1e-2, "checkpoint_every": 4, "keep_checkpoints": 3, "seq_len": 128},
            "ppo": {"iterations": 10, "rollouts": 16, "minibatch": 8, "epochs": 2, "max_new_tokens": 12,
                    "kl_coef": 0.01, "no_end_penalty": 0.0}}


def test_tiny_ppo_raises_its_reward_and_resumes_exactly(tmp_path, reward_module, capsys):
    from foresight.weights.load import load_model

    settings = _settings(tmp_path, reward_module)
    summary = train_ppo(config_from_dict(PPOConfig, settings), tmp_path / "ppo", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    scores = [r["score"] for r in rows if "score" in r]
    assert len(scores) == 10  # one report per iteration
    first, last = sum(scores[:3]) / 3, sum(scores[-3:]) / 3
    assert last > first + 0.3, scores  # 10 x the share of "e": the policy learned to write more of them
    assert {"kl", "entropy", "clip_fraction", "value_loss", "reply_tokens", "probe_refusal_rate/allowed",
            f"score/{reward_module}"} <= set(rows[-1])
    assert (tmp_path / "ppo" / "model" / "config.json").is_file()
    # every rollout as text, 16 per iteration, its score and each source's; their mean is the iteration's score
    rollouts = [json.loads(line) for line in (tmp_path / "ppo" / "rollouts.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rollouts] == [i for i in range(1, 11) for _ in range(16)]
    last = [r for r in rollouts if r["iteration"] == 10]
    assert sum(r["score"] for r in last) / 16 == pytest.approx(rows[-1]["score"])
    assert all(r["score"] == pytest.approx(10 * r[reward_module]) for r in last)  # weight 10, no end penalty
    assert all(r[reward_module] == pytest.approx(r["reply"].count("e") / max(len(r["reply"]), 1)) for r in last)

    # interrupted after iteration 8 (the checkpoints at updates 36 and 40 lost), then resumed: the same weights
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "ppo", cut)
    for step in (36, 40):
        shutil.rmtree(cut / "checkpoints" / f"step_{step:08d}")
    (cut / "checkpoints" / "latest").unlink(missing_ok=True)
    shutil.rmtree(cut / "model")
    resumed = train_ppo(config_from_dict(PPOConfig, settings), cut, resume=True, progress=False)
    assert f"from step_{32:08d}" in capsys.readouterr().out  # resumed after iteration 8, not restarted
    assert resumed["last_iteration"]["score"] == pytest.approx(summary["last_iteration"]["score"], abs=1e-9)
    a, b = load_model(str(tmp_path / "ppo")).model.state_dict(), load_model(str(cut)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the replayed iterations' rollouts were logged once: the resumed log is the uninterrupted one
    assert (cut / "rollouts.jsonl").read_text() == (tmp_path / "ppo" / "rollouts.jsonl").read_text()


def test_ppo_config_errors_name_the_key(tmp_path):
    with pytest.raises(ForesightError, match="no reward"):
        config_from_dict(PPOConfig, {})
    rewards = [{"name": "refusal_rules"}]
    with pytest.raises(ForesightError, match=r"\[ppo\] kl_estimator"):
        config_from_dict(PPOConfig, {"rewards": rewards, "ppo": {"kl_estimator": "k2"}})
    with pytest.raises(ForesightError, match="multiple of minibatch"):
        config_from_dict(PPOConfig, {"rewards": rewards, "ppo": {"rollouts": 10, "minibatch": 4}})
    with pytest.raises(ForesightError, match="checkpoint_every"):
        config_from_dict(PPOConfig, {"rewards": rewards, "train": {"checkpoint_every": 3}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    cfg = config_from_dict(PPOConfig, {"base": str(_tiny_base(tmp_path)), "rewards": rewards,
                                       "prompts": {"source": str(bad)}})
    with pytest.raises(ForesightError, match=f"{bad}:1: type is missing"):
        train_ppo(cfg, tmp_path / "run", progress=False)


def test_prompt_files_are_read_line_by_line_with_errors_by_line(tmp_path):
    from foresight.align.config import PPOPrompts
    from foresight.align.ppo import load_prompts

    good = json.dumps({"messages": [{"role": "user", "content": "hi"}], "type": "allowed"})
    path = tmp_path / "p.jsonl"
    path.write_text(good + "\n\n" + good.replace("hi", "yo") + "\n")
    assert [(p.text, p.ptype) for p in load_prompts(PPOPrompts(source=str(path)), "train")] == [
        ("hi", "allowed"), ("yo", "allowed")]
    for content, message in ((good + "\n{oops\n", ":2: not valid JSON"), ("[1]\n", ":1: a JSON list, not an object"),
                             ("\n\n", ":1: the file is empty"),
                             (json.dumps({"messages": [{"role": "assistant", "content": "x"}], "type": "a"}),
                              ":1: messages must be a list of turns ending with the user's")):
        path.write_text(content)
        with pytest.raises(ForesightError, match=f"{path}{message}"):
            load_prompts(PPOPrompts(source=str(path)), "train")
    with pytest.raises(ForesightError, match="no such file"):
        load_prompts(PPOPrompts(source=str(tmp_path / "missing.jsonl")), "train")
    # the built-in sets: SFT's own requests, or the RL phrasings; both probe with the held-out split
    rl = load_prompts(PPOPrompts(source="behaviour_rl"), "train")
    assert {p.ptype for p in rl} == {"allowed", "disallowed"} and len(rl) == 762
    assert [p.text for p in load_prompts(PPOPrompts(source="behaviour_rl"), "heldout")] == [
        p.text for p in load_prompts(PPOPrompts(source="behaviour"), "heldout")]
    # a run trained on a file probes with the file, or with the built-in held-out requests if it says so
    from foresight.align.ppo import probe_prompts

    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}], "type": "allowed"}) + "\n")
    assert [p.text for p in probe_prompts(PPOPrompts(source=str(path)))] == ["Hi"]
    assert [p.text for p in probe_prompts(PPOPrompts(source=str(path), probe_source="behaviour"))] == [
        p.text for p in load_prompts(PPOPrompts(source="behaviour"), "heldout")]


def test_advantages_whitened_or_kept_at_their_scale(tmp_path, reward_module):
    """ppo.whiten_advantages=false keeps GAE's scale: the same rollouts (same weights and seeds) give a different
    first update, and the iteration's policy loss is the raw advantages' (whitened ones average to zero)."""
    runs, base = {}, _settings(tmp_path, reward_module)
    for whiten in (True, False):
        settings = json.loads(json.dumps(base))
        settings["ppo"] |= {"iterations": 1, "epochs": 1, "minibatch": 16, "whiten_advantages": whiten}
        settings["train"] |= {"checkpoint_every": 0}
        train_ppo(config_from_dict(PPOConfig, settings), tmp_path / f"w{whiten}", progress=False)
        rows = [json.loads(line) for line in (tmp_path / f"w{whiten}" / "metrics.jsonl").read_text().splitlines()]
        runs[whiten] = rows[-1]
    assert runs[True]["score"] == runs[False]["score"]  # the same rollouts
    # one minibatch of every rollout at ratio 1: the loss is minus the mean advantage over reply tokens
    assert abs(runs[True]["policy_loss"]) < 1e-5
    assert abs(runs[False]["policy_loss"]) > 1e-3


def test_keep_best_exports_the_iteration_with_the_best_probe_score(tmp_path, reward_module):
    """ppo.keep_best: the exported model is the iteration (the start counted) whose greedy probe replies scored
    highest, saved in RUN/best; a config without a probe is refused by key."""
    from safetensors.torch import load_file

    from foresight.weights.load import load_model

    settings = _settings(tmp_path, reward_module)
    settings["ppo"] |= {"iterations": 4, "keep_best": True}
    settings["train"] |= {"checkpoint_every": 0}
    summary = train_ppo(config_from_dict(PPOConfig, settings), tmp_path / "ppo", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    probe = [r["probe_score"] for r in rows if "probe_score" in r]
    assert len(probe) == 4 and "exported_iteration" in summary
    best = summary["exported_iteration"]
    if best > 0:  # a trained iteration won: the first with the highest score
        assert probe[best - 1] == summary["exported_probe_score"] == max(probe)
        assert probe.index(max(probe)) == best - 1
    else:  # the starting model beat every iteration
        assert summary["exported_probe_score"] >= max(probe)
    saved = load_file(next((tmp_path / "ppo" / "best").glob("step_*")) / "model.safetensors")
    exported = load_model(str(tmp_path / "ppo")).model.state_dict()
    assert all(torch.equal(exported[k], saved[f"lm.{k}"]) for k in exported if f"lm.{k}" in saved)
    assert sum(f"lm.{k}" in saved for k in exported) >= len(exported) - 1  # tied head stored once

    settings["prompts"]["probe"] = 0
    with pytest.raises(ForesightError, match="keep_best.*probe"):
        config_from_dict(PPOConfig, settings)


def test_average_last_exports_the_mean_of_the_last_iterations(tmp_path, reward_module):
    """ppo.average_last = N: the exported weights are the mean of the weights at the end of the last N iterations,
    and a resumed run does not count an iteration twice."""
    from foresight.weights.load import load_model

    settings = _settings(tmp_path, reward_module)
    settings["ppo"] |= {"iterations": 3, "average_last": 2}
    settings["train"] |= {"checkpoint_every": 4}
    summary = train_ppo(config_from_dict(PPOConfig, settings), tmp_path / "ppo", progress=False)
    assert summary["exported_average_of"] == 2
    # the weights after iterations 2 and 3 are the loop's checkpoints at updates 8 and 12
    from foresight.train.checkpoint import load_checkpoint

    ckpts = tmp_path / "ppo" / "checkpoints"
    w2, w3 = (load_checkpoint(ckpts / f"step_{s:08d}").model_state for s in (8, 12))
    exported = load_model(str(tmp_path / "ppo")).model.state_dict()
    for k, v in exported.items():
        if f"lm.{k}" in w2:
            assert torch.allclose(v, (w2[f"lm.{k}"] + w3[f"lm.{k}"]) / 2, atol=1e-6), k
    assert any(not torch.equal(w2[k], w3[k]) for k in w2)  # the two iterations differ: the mean is not either

    # killed after the mean took iteration 3 but before its checkpoint: resumed, iteration 3 runs again and is not
    # counted twice
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "ppo", cut)
    shutil.rmtree(cut / "checkpoints" / "step_00000012")
    (cut / "checkpoints" / "latest").unlink()
    resumed = train_ppo(config_from_dict(PPOConfig, settings), cut, resume=True, progress=False)
    assert resumed["exported_average_of"] == 2
    again = load_model(str(cut)).model.state_dict()
    assert all(torch.allclose(exported[k], again[k], atol=1e-6) for k in exported)

    settings["ppo"]["keep_best"] = True
    with pytest.raises(ForesightError, match="average_last and ppo.keep_best"):
        config_from_dict(PPOConfig, settings)
    settings["ppo"] |= {"keep_best": False, "average_last": 4}
    with pytest.raises(ForesightError, match="average_last must be between 0 and ppo.iterations"):
        config_from_dict(PPOConfig, settings)
