"""The DPO trainer: reply log-probabilities equal a direct computation on packed and padded rows, and a tiny run
end to end whose implicit reward rises, resumes exactly, and whose config errors name the key."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from foresight.align.config import DPOConfig
from foresight.align.dpo import train_dpo
from foresight.align.replies import reply_batch, reply_logprobs
from foresight.align.rm import Pair
from foresight.config import config_from_dict
from foresight.errors import ForesightError
from foresight.weights.load import load_model
from tests.test_align_train import _tiny_base, _write_jsonl


def test_reply_logprobs_equal_each_sides_own_forward_pass(tmp_path):
    from foresight.align.run import load_base

    lm = load_base(str(_tiny_base(tmp_path)), torch.device("cpu")).model.eval()
    g = torch.Generator().manual_seed(1)
    shapes = [(12, 30, 5), (17, 9, 4), (40, 41, 20), (6, 7, 3)]  # chosen length, rejected length, reply start
    pairs = [Pair(torch.randint(1, 200, (n,), generator=g).tolist(), torch.randint(1, 200, (m,), generator=g).tolist(),
                  "x", s) for n, m, s in shapes]

    def direct(ids: list[int], start: int) -> float:
        with torch.no_grad():
            logp = F.log_softmax(lm(torch.tensor([ids]))[0].float(), -1)
        return sum(logp[j - 1, ids[j]].item() for j in range(start, len(ids)))

    expected = [direct(p.chosen, p.reply_start) for p in pairs] + [direct(p.rejected, p.reply_start) for p in pairs]
    with torch.no_grad():
        packed = reply_logprobs(lm, reply_batch(pairs, 64))
        padded = reply_logprobs(lm, reply_batch(pairs))
    assert len(reply_batch(pairs, 64).sides.tokens) < len(reply_batch(pairs).sides.tokens)
    assert packed.tolist() == pytest.approx(expected, abs=1e-3)
    assert padded.tolist() == pytest.approx(expected, abs=1e-3)


def _pairs() -> list[dict]:
    topics = ["cats", "rain", "maps", "tea", "ships", "clocks", "bread", "stars", "rivers", "bees", "glass", "snow"]
    return [{"id": f"{t}{i}", "source": "polite" if j % 2 else "plain",
             "messages": [{"role": "user", "content": f"Tell me about {t}, item {i}."}],
             "chosen": f"Gladly: {t} are interesting.", "rejected": f"No. {t} bore me."}
            for i in range(4) for j, t in enumerate(topics)]


def test_tiny_dpo_raises_the_chosen_replies_reward_and_resumes_exactly(tmp_path):
    base = _tiny_base(tmp_path)
    pairs = _pairs()
    train = _write_jsonl(tmp_path / "pairs.jsonl", pairs[:36])
    held = _write_jsonl(tmp_path / "held.jsonl", pairs[36:])
    settings = {"base": str(base), "data": {"train": train, "heldout": held},
                "train": {"seq_len": 96, "batch_size": 4, "lr": 3e-3, "eval_every": 3, "checkpoint_every": 3},
                "dpo": {"steps": 6, "beta": 0.5}}
    summary = train_dpo(config_from_dict(DPOConfig, settings), tmp_path / "dpo", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r]
    # at step 0 the policy is the reference: margin 0, loss log 2; training must move both the right way
    assert summary["heldout"]["margin"] > 0.5 and summary["heldout"]["acc"] == 1.0
    assert summary["heldout"]["val_loss"] < 0.69 and evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert summary["heldout"]["chosen_reward"] > summary["heldout"]["rejected_reward"]
    assert (tmp_path / "dpo" / "model" / "config.json").is_file()

    # interrupted after step 3 (the later checkpoint lost), then resumed: the same final weights
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "dpo", cut)
    shutil.rmtree(cut / "checkpoints" / f"step_{6:08d}")
    (cut / "checkpoints" / "latest").unlink(missing_ok=True)
    shutil.rmtree(cut / "model")
    resumed = train_dpo(config_from_dict(DPOConfig, settings), cut, resume=True, progress=False)
    assert resumed["heldout"]["val_loss"] == pytest.approx(summary["heldout"]["val_loss"], abs=1e-6)
    a, b = load_model(str(tmp_path / "dpo")).model.state_dict(), load_model(str(cut)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dpo_config_errors_name_the_key():
    with pytest.raises(ForesightError, match=r"\[dpo\] loss must be one of"):
        config_from_dict(DPOConfig, {"dpo": {"loss": "hinge"}})
    with pytest.raises(ForesightError, match=r"\[dpo\] beta must be positive"):
        config_from_dict(DPOConfig, {"dpo": {"beta": 0}})
    with pytest.raises(ForesightError, match=r"\[dpo\] label_smoothing"):
        config_from_dict(DPOConfig, {"dpo": {"loss": "ipo", "label_smoothing": 0.1}})
    with pytest.raises(ForesightError, match=r"train.tokens is for pre-training; set dpo.epochs"):
        config_from_dict(DPOConfig, {"train": {"tokens": 1000}})
