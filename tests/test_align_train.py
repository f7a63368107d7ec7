"""SFT and the reward model: the assistant mask against the real chat template, packing against one conversation at a
time, and tiny end-to-end runs (loss moves, resume is exact, the exported model loads, the reward model learns)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from foresight.align import sft as sft_mod
from foresight.align.config import RMConfig, SFTConfig
from foresight.align.tokens import conversation_tokens
from foresight.cli import main
from foresight.config import config_from_dict
from foresight.errors import ForesightError
from foresight.model import ModelConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_export import make_run  # noqa: E402

CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris"},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, of course."},
]


def _trained_spans(tokenizer, ids, trained):
    """Decoded text of each maximal run of trained ids."""
    spans, current = [], []
    for i, t in zip(ids, trained):
        if t:
            current.append(i)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from foresight.weights.load import load_model

    return load_model("smollm2-135m-instruct").tokenizer


def test_assistant_mask_is_exactly_the_assistant_turns_of_smollm2_template(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids, trained = conversation_tokens(tok, CONVERSATION)
    assert ids == tok.apply_chat_template(CONVERSATION, add_generation_prompt=False)
    assert _trained_spans(tok, ids, trained) == ["Paris<|im_end|>", "Rome, of course.<|im_end|>"]
    # Without a system message the template adds its default one; the mask still covers only the reply.
    ids, trained = conversation_tokens(tok, CONVERSATION[1:3])
    assert "SmolLM" in tok.decode(ids)
    assert _trained_spans(tok, ids, trained) == ["Paris<|im_end|>"]


def test_assistant_mask_on_a_run_tokenizer_ends_turns_with_its_eos(tmp_path):
    from foresight.align.run import load_base

    make_run(tmp_path, ModelConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=128, parametrization="sp"))
    loaded = load_base(str(tmp_path), torch.device("cpu"))
    ids, trained = conversation_tokens(loaded.tokenizer, CONVERSATION)
    spans = _trained_spans(loaded.tokenizer, ids, trained)
    assert spans == ["Paris<|endoftext|>", "Rome, of course.<|endoftext|>"]
    assert ids[[i for i, t in enumerate(trained) if t][0] - 1] != loaded.tokenizer.eos_ids[0]


def test_a_template_that_rewrites_earlier_turns_is_refused():
    class Rewriting:  # renders the last user turn differently once a reply follows it
        eos_ids = [0]

        def apply_chat_template(self, messages, add_generation_prompt=True):
            ids = [len(m["content"]) + (7 if i == len(messages) - 1 else 0) for i, m in enumerate(messages)]
            return ids + ([1] if add_generation_prompt else [])

    with pytest.raises(ForesightError, match="cannot be marked exactly"):
        conversation_tokens(Rewriting(), CONVERSATION[1:3], where="x.jsonl: 3")


def _tiny_base(root: Path) -> Path:
    base = root / "base"
    base.mkdir()
    make_run(base, ModelConfig(d_model=48, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=256,
                               parametrization="sp"))
    return base


def test_packed_rows_compute_exactly_what_each_conversation_computes_alone(tmp_path):
    from foresight.align.run import load_base

    loaded = load_base(str(_tiny_base(tmp_path)), torch.device("cpu"))
    records = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": f"{w} " * k}]}
               for k, w in enumerate(["one", "two", "three", "four", "five", "six"], 1)]
    examples, too_long = sft_mod.tokenize(loaded.tokenizer, records, 129, "test")
    assert too_long == 0 and len(examples) == 6
    packed = sft_mod.pack(examples, 128, seed=0)
    assert len(packed) < len(examples)  # several conversations share a row
    loss_model = sft_mod.AssistantLoss(loaded.model).eval()
    with torch.no_grad():
        together = loss_model(sft_mod.stack(packed), reduction="sum")
        alone = sum(loss_model(sft_mod.stack([sft_mod._row([ex], len(ex.ids) - 1)]), reduction="sum")
                    for ex in examples)
    assert together.item() == pytest.approx(alone.item(), rel=1e-5)
    trained = sum((sft_mod.stack(packed).targets != sft_mod.IGNORE).sum().item() for _ in [0])
    assert trained == sum(sum(ex.trained[1:]) for ex in examples)


def test_reward_model_gives_the_same_rewards_on_packed_and_padded_sides(tmp_path):
    from foresight.align.rm import Pair, RewardModel, pair_batch
    from foresight.align.run import load_base

    loaded = load_base(str(_tiny_base(tmp_path)), torch.device("cpu"))
    torch.manual_seed(0)
    model = RewardModel(loaded.model).eval()
    g = torch.Generator().manual_seed(1)
    pairs = [Pair(torch.randint(1, 200, (n,), generator=g).tolist(), torch.randint(1, 200, (m,), generator=g).tolist(),
                  "x") for n, m in [(5, 30), (17, 9), (40, 12), (3, 3), (25, 26)]]
    packed, padded = pair_batch(pairs, 64), pair_batch(pairs)
    assert len(packed.tokens) < len(padded.tokens)  # sides share rows
    with torch.no_grad():
        assert torch.allclose(model(packed), model(padded), atol=1e-5, rtol=0)
        # The row length is only a floor: a side longer than it gets a row of its own length.
        assert torch.allclose(model(pair_batch(pairs, 8)), model(padded), atol=1e-5, rtol=0)


def test_select_caps_each_source_except_the_uncapped_and_names_an_unknown_one():
    from foresight.align.config import AlignDataConfig
    from foresight.align.run import select

    records = [{"id": f"{s}{i}", "source": s} for s in ("wiki", "rules") for i in range(10)]
    kept = select(records, AlignDataConfig(max_per_source=3, uncapped_sources=["rules"]), seed=0)
    assert sum(r["source"] == "wiki" for r in kept) == 3 and sum(r["source"] == "rules" for r in kept) == 10
    assert kept == [r for r in records if r in kept]  # file order kept
    with pytest.raises(ForesightError, match=r"data.uncapped_sources: .*rule\b.*the sources are rules, wiki"):
        select(records, AlignDataConfig(max_per_source=3, uncapped_sources=["rule"]), seed=0)


def test_select_repeats_the_named_sources_after_the_caps_and_config_checks_the_counts():
    from foresight.align.config import AlignDataConfig, SFTConfig
    from foresight.align.run import select
    from foresight.config import config_from_dict

    records = [{"id": f"{s}{i}", "source": s} for s in ("wiki", "rules") for i in range(10)]
    kept = select(records, AlignDataConfig(max_per_source=3, repeat={"wiki": 3}), seed=0)
    wiki = [r["id"] for r in kept if r["source"] == "wiki"]
    assert len(wiki) == 9 and len(set(wiki)) == 3 and sum(r["source"] == "rules" for r in kept) == 3
    with pytest.raises(ForesightError, match=r"data.repeat: .*wik\b.*the sources are rules, wiki"):
        select(records, AlignDataConfig(repeat={"wik": 2}), seed=0)
    cfg = config_from_dict(SFTConfig, {"data": {"repeat": {"over_refusal": 3}}})
    assert cfg.data.repeat == {"over_refusal": 3}
    with pytest.raises(ForesightError, match=r"\[data\] repeat.over_refusal must be at least 1, not 0"):
        config_from_dict(SFTConfig, {"data": {"repeat": {"over_refusal": 0}}})
    with pytest.raises(ForesightError, match=r"data.repeat.over_refusal must be int, not '2'"):
        config_from_dict(SFTConfig, {"data": {"repeat": {"over_refusal": "2"}}})
    with pytest.raises(ForesightError, match=r"data.repeat must be a table"):
        config_from_dict(SFTConfig, {"data": {"repeat": 2}})


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _sft_data(root: Path) -> tuple[str, str]:
    convs = [{"id": str(i), "source": "count",
              "messages": [{"role": "user", "content": f"Count from {i}."},
                           {"role": "assistant", "content": " ".join(str(i + k) for k in range(6))}]}
             for i in range(40)]
    return _write_jsonl(root / "train.jsonl", convs[:32]), _write_jsonl(root / "held.jsonl", convs[32:])


def _sft_config(base: Path, train: str, held: str, **train_keys) -> SFTConfig:
    return config_from_dict(SFTConfig, {
        "base": str(base), "data": {"train": train, "heldout": held},
        "train": {"seq_len": 96, "batch_size": 4, "lr": 3e-3, "eval_every": 0, "checkpoint_every": 3,
                  "keep_checkpoints": 5, "log_every": 1, **train_keys},
        "sft": {"steps": 12}})


def test_tiny_sft_learns_resumes_exactly_and_exports_a_loadable_model(tmp_path):
    from foresight.align.sft import train_sft
    from foresight.weights.load import load_model

    base = _tiny_base(tmp_path)
    train, held = _sft_data(tmp_path)
    cfg = _sft_config(base, train, held)
    full = train_sft(cfg, tmp_path / "full", progress=False)
    first = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[0])
    assert full["final_heldout_loss"] < 0.8 * first["train_loss"]  # it learned to count
    tuned = load_model(str(tmp_path / "full"))
    assert tuned.kind == "tuned" and tuned.name == "full" and tuned.chat_template
    # The eval harness takes the run as a MODEL: its answers are keyed on the exported files, and its config.toml
    # (an SFT config) is not read as a pre-training run's.
    from foresight.evals.cache import model_files
    from foresight.evals.commands import _run_validation_text

    kind, files = model_files(str(tmp_path / "full"))
    assert kind == "tuned" and tmp_path / "full" / "model" / "model.safetensors" in files
    assert _run_validation_text(str(tmp_path / "full")) is None

    # Interrupted after step 6 (later checkpoints lost), then resumed: the same final weights.
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    for step in (9, 12):
        shutil.rmtree(cut / "checkpoints" / f"step_{step:08d}")
    (cut / "checkpoints" / "latest").unlink(missing_ok=True)
    shutil.rmtree(cut / "model")
    resumed = train_sft(cfg, cut, resume=True, progress=False)
    assert resumed["final_heldout_loss"] == pytest.approx(full["final_heldout_loss"], abs=1e-6)
    a, b = load_model(str(tmp_path / "full")).model.state_dict(), load_model(str(cut)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(ForesightError, match="already holds a run"):
        train_sft(cfg, tmp_path / "full", progress=False)
    with pytest.raises(ForesightError, match="differs"):
        train_sft(_sft_config(base, train, held, lr=1e-3), cut, resume=True, progress=False)


def test_tiny_reward_model_learns_a_preference_and_scores_from_the_cli(tmp_path, capsys):
    from foresight.align.rm import train_rm

    base = _tiny_base(tmp_path)
    topics = ["cats", "rain", "maps", "tea", "ships", "clocks", "bread", "stars", "rivers", "bees", "glass", "snow"]
    pairs = [{"id": f"{t}{i}", "source": "polite" if j % 2 else "plain",
              "messages": [{"role": "user", "content": f"Tell me about {t}, item {i}."}],
              "chosen": f"Gladly: {t} are interesting.", "rejected": f"No. {t} bore me."}
             for i in range(4) for j, t in enumerate(topics)]
    train = _write_jsonl(tmp_path / "pairs.jsonl", pairs[:36])
    held = _write_jsonl(tmp_path / "held.jsonl", pairs[36:])
    cfg = config_from_dict(RMConfig, {"base": str(base), "data": {"train": train, "heldout": held},
                                      "train": {"seq_len": 96, "batch_size": 4, "lr": 3e-3, "eval_every": 0},
                                      "rm": {"epochs": 3}})
    summary = train_rm(cfg, tmp_path / "rm", progress=False)
    assert summary["heldout"]["acc"] == 1.0 and summary["heldout"]["margin"] > 1.0
    assert set(summary["heldout"]) >= {"acc/polite", "acc/plain"}

    capsys.readouterr()
    assert main(["align", "score", str(tmp_path / "rm"), "--prompt", "Tell me about owls, item 9.",
                 "--response", "Gladly: owls are interesting.", "--response", "No. owls bore me."]) == 0
    lines = capsys.readouterr().out.splitlines()
    good, bad = (float(line.split()[0]) for line in lines)
    assert good > bad
    assert main(["align", "score", str(tmp_path / "base"), "--prompt", "x", "--response", "y"]) != 0
    assert "not a reward-model run" in capsys.readouterr().err


def test_align_configs_refuse_pretraining_lengths_and_unknown_keys(tmp_path):
    with pytest.raises(ForesightError, match=r"train.tokens is for pre-training; set sft.epochs"):
        config_from_dict(SFTConfig, {"train": {"tokens": 1000}})
    with pytest.raises(ForesightError, match="sft.epoch"):
        config_from_dict(SFTConfig, {"sft": {"epoch": 2}})
    with pytest.raises(ForesightError, match="rm.margin"):
        config_from_dict(RMConfig, {"rm": {"margin": -1}})


def test_align_sft_cli_names_the_bad_line_of_a_data_file(tmp_path, capsys):
    base = _tiny_base(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "hello"}]}) + "\n"
                   + json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "  "}]}) + "\n")
    config = tmp_path / "sft.toml"
    config.write_text(f'base = "{base}"\n[data]\ntrain = "{bad}"\n[train]\nseq_len = 64\nbatch_size = 2\n')
    assert main(["align", "sft", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) != 0
    assert f"{bad}:2" in capsys.readouterr().err
