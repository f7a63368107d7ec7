"""The serving engine: requests that join and leave a running batch, chunked prefill, n choices, per-request
sampling settings, stop strings, log-probabilities, cancellation and back-pressure — each checked against the
plain one-prompt-at-a-time generation of foresight.model.generate (the reference), on the tiny random model whose
logits are far apart so that batching cannot flip a greedy choice."""

from __future__ import annotations

import time

import pytest
import torch

from foresight.model.generate import Generation, generate, generate_text
from foresight.serve.engine import ContextTooLong, Engine, EngineClosed, QueueFull, SamplingParams

PROMPTS = [[5, 17, 42, 99, 7, 3, 250, 11], [1], [200, 13, 8], [60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71],
           [9, 9, 9, 9, 9], [33, 44]]


class Collected:
    """A request's outputs as they arrive."""

    def __init__(self):
        self.outputs = []

    def __call__(self, out):
        self.outputs.append(out)

    @property
    def tokens(self):
        return [t for o in self.outputs for t in o.token_ids]

    @property
    def text(self):
        return "".join(o.text for o in self.outputs)

    @property
    def finish_reason(self):
        return self.outputs[-1].finish_reason if self.outputs else None


def run_until_idle(engine: Engine, limit: int = 1000) -> None:
    for _ in range(limit):
        if engine.idle:
            return
        engine.step()
    raise AssertionError("the engine did not finish")


def greedy(max_tokens: int, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, stop_token_ids=(), **kw)


def test_requests_joining_a_running_batch_equal_each_prompt_alone(tiny):
    model, tok = tiny
    engine = Engine(model, tok, max_batch=4, prefill_chunk=64)
    results = []
    for i, prompt in enumerate(PROMPTS):  # a new request every 3 steps, some while others run, two waiting
        results.append(Collected())
        engine.submit(prompt, greedy(10 + 3 * i), results[-1])
        for _ in range(3):
            engine.step()
        assert engine.running <= 4
    run_until_idle(engine)
    for i, (prompt, got) in enumerate(zip(PROMPTS, results)):
        assert got.tokens == generate(model, [prompt], max_new_tokens=10 + 3 * i)[0], f"request {i}"
        assert got.finish_reason == "length"


def test_long_prompts_are_prefilled_in_chunks_between_decode_steps(tiny):
    model, tok = tiny
    long_prompt = list(range(3, 70))
    engine = Engine(model, tok, max_batch=4, prefill_chunk=8)
    short, long = Collected(), Collected()
    engine.submit(PROMPTS[0], greedy(20), short)
    engine.step()
    engine.submit(long_prompt, greedy(12), long)
    steps_while_prefilling = 0
    while not long.outputs:
        before = len(short.outputs)
        engine.step()
        steps_while_prefilling += 1
        assert len(short.outputs) == before + 1 or short.finish_reason  # the short one kept decoding meanwhile
    assert steps_while_prefilling == -(-len(long_prompt) // 8)  # one 8-token chunk per step
    run_until_idle(engine)
    assert long.tokens == generate(model, [long_prompt], max_new_tokens=12)[0]
    assert short.tokens == generate(model, [PROMPTS[0]], max_new_tokens=20)[0]


def test_n_seeded_choices_equal_separate_seeded_generations(tiny):
    model, tok = tiny
    engine = Engine(model, tok, max_batch=8)
    params = SamplingParams(max_tokens=12, temperature=0.9, top_k=20, top_p=0.9, seed=123, stop_token_ids=())
    outputs = {}
    engine.submit(PROMPTS[2], params, lambda out: outputs.setdefault(out.index, []).extend(out.token_ids), n=3)
    other = Collected()
    engine.submit(PROMPTS[0], greedy(5), other)  # another request in the same batch changes nothing
    run_until_idle(engine)
    for i in range(3):
        alone = generate(model, [PROMPTS[2]], max_new_tokens=12, temperature=0.9, top_k=20, top_p=0.9,
                         seed=123 + i)[0]
        assert outputs[i] == alone, f"choice {i}"
    assert outputs[0] != outputs[1]  # different seeds: different draws


def test_stop_strings_and_stop_tokens_match_generate_text(tiny):
    model, tok = tiny
    prompt = tok.encode("The capital")
    reference = generate_text(model, tok, [prompt], max_new_tokens=30)[0]
    assert len(reference.text) > 6
    stop = reference.text[3:6]
    expected = generate_text(model, tok, [prompt], max_new_tokens=30, stop=[stop])[0]
    engine = Engine(model, tok)
    got = Collected()
    engine.submit(prompt, SamplingParams(max_tokens=30, temperature=0.0, stop=(stop,)), got)
    run_until_idle(engine)
    assert got.text == expected.text and got.finish_reason == "stop"
    eos = generate(model, [prompt], max_new_tokens=1)[0][0]  # make the first greedy token a stop token
    got = Collected()
    engine.submit(prompt, SamplingParams(max_tokens=30, temperature=0.0, stop_token_ids=(eos,)), got)
    run_until_idle(engine)
    assert got.tokens == [] and got.finish_reason == "stop"


def test_logprobs_are_the_models_log_softmax(tiny):
    model, tok = tiny
    engine = Engine(model, tok)
    got = Collected()
    engine.submit(PROMPTS[0], greedy(4, logprobs=3), got)
    run_until_idle(engine)
    ids = PROMPTS[0] + got.tokens
    with torch.no_grad():
        logp = model(torch.tensor([ids]))[0].float().log_softmax(-1)
    entries = [lp for o in got.outputs for lp in o.logprobs]
    assert len(entries) == 4
    for step, entry in enumerate(entries):
        row = logp[len(PROMPTS[0]) - 1 + step]
        assert entry.token_id == got.tokens[step]
        assert entry.logprob == pytest.approx(float(row[entry.token_id]), abs=1e-4)
        top_ids = row.topk(3).indices.tolist()
        assert [t for t, _ in entry.top] == top_ids
        assert entry.top[0][0] == entry.token_id  # greedy: the chosen token is the most likely


def test_cancelled_requests_free_their_rows(tiny):
    model, tok = tiny
    engine = Engine(model, tok, max_batch=2)
    a, b, c = Collected(), Collected(), Collected()
    handle = engine.submit(PROMPTS[0], greedy(50), a)
    engine.submit(PROMPTS[1], greedy(50), b)
    engine.submit(PROMPTS[2], greedy(6), c)  # waits: the batch is full
    engine.step()
    engine.step()
    assert engine.running == 2 and engine.waiting == 1
    handle.cancel()
    engine.step()
    assert engine.waiting == 0  # c took a's row
    n_a = len(a.outputs)
    run_until_idle(engine)
    assert len(a.outputs) == n_a  # nothing more for the cancelled request
    assert c.tokens == generate(model, [PROMPTS[2]], max_new_tokens=6)[0]
    assert b.tokens == generate(model, [PROMPTS[1]], max_new_tokens=50)[0]


def test_bad_requests_queue_limits_and_closing_are_refused(tiny):
    model, tok = tiny
    engine = Engine(model, tok, max_batch=1, max_queue=2)
    with pytest.raises(ContextTooLong, match="context length is 96 tokens.*8 tokens and 90"):
        engine.submit(PROMPTS[0], greedy(90), Collected())
    with pytest.raises(Exception, match="outside the model's vocabulary"):
        engine.submit([10**6], greedy(2), Collected())
    with pytest.raises(Exception, match="n must be between 1 and"):
        engine.submit(PROMPTS[0], greedy(2), Collected(), n=2)
    with pytest.raises(Exception, match="temperature"):
        engine.submit(PROMPTS[0], SamplingParams(max_tokens=2, temperature=-1), Collected())
    engine.submit(PROMPTS[0], greedy(2), Collected())
    engine.submit(PROMPTS[0], greedy(2), Collected())
    with pytest.raises(QueueFull, match="2 requests are already waiting"):
        engine.submit(PROMPTS[0], greedy(2), Collected())
    engine.close()
    with pytest.raises(EngineClosed):
        engine.submit(PROMPTS[0], greedy(2), Collected())
    run_until_idle(engine)  # what was accepted still finishes


def test_engine_thread_serves_concurrent_callers(tiny):
    model, tok = tiny
    engine = Engine(model, tok, max_batch=3).start()
    try:
        outputs = engine.generate(PROMPTS, greedy(9))
    finally:
        engine.stop()
    for prompt, outs in zip(PROMPTS, outputs):
        assert [t for o in outs for t in o.token_ids] == generate(model, [prompt], max_new_tokens=9)[0]


def test_a_generate_batch_is_admitted_whole_whatever_the_timing(tiny):
    """generate queues every prompt before the engine thread can admit any, so its batches (and a seeded run's
    samples) do not depend on how fast the caller submits: the first admission sees all of them waiting."""
    model, tok = tiny
    engine = Engine(model, tok, max_batch=len(PROMPTS))
    seen, admit = [], engine._admit

    def recording_admit():  # records how many requests were waiting at each admission
        if engine._waiting:
            seen.append(len(engine._waiting))
        admit()

    engine._admit = recording_admit
    original_submit = engine.submit

    def slow_submit(*args, **kwargs):  # a caller slow between prompts: unlocked, the engine would start on the first
        request = original_submit(*args, **kwargs)
        time.sleep(0.01)
        return request

    engine.submit = slow_submit
    engine.start()
    try:
        outputs = engine.generate(PROMPTS, greedy(4))
    finally:
        engine.stop()
    assert seen[0] == len(PROMPTS)
    assert all(len([t for o in outs for t in o.token_ids]) == 4 for outs in outputs)


def test_generation_reference_is_unchanged_by_the_engine(tiny):
    """The engine's cache view and row moves write into its own cache only: a Generation run before and after
    gives the same tokens (guards against a shared-storage bug)."""
    model, tok = tiny
    before = list(Generation(model, [PROMPTS[3]], max_new_tokens=8))
    engine = Engine(model, tok)
    engine.submit(PROMPTS[3], greedy(8), Collected())
    run_until_idle(engine)
    assert list(Generation(model, [PROMPTS[3]], max_new_tokens=8)) == before
