"""The serving engine: continuous (in-flight) batching of many requests over one KV cache.

A request is a prompt (token ids), its sampling settings and `n` choices. It waits in a bounded queue, is admitted
when the batch has room for its n rows, has its prompt run through the model (prefill), and then each of its
choices decodes one token per engine step alongside every other running sequence until it stops. Each step:

1. drop cancelled sequences (e.g. their client went away), freeing their rows;
2. admit waiting requests while the running batch has free rows (at most `max_batch` rows in all);
3. prefill: one group of short prompts in one right-padded forward, or the next `prefill_chunk` tokens of one long
   prompt, so that a long prompt delays the running sequences by one chunk per step, not by its whole length;
4. decode: one forward of every running sequence's last token, then each row's next token with its own settings.

The running sequences occupy the first rows of one pre-allocated cache (`KVCache.view` runs exactly those rows);
when one finishes, the last row moves into its place. The cache starts short and doubles as sequences grow.
Sampling is `sample_next_token`'s two halves (`sampling_probs` for the rows that share settings, `draw_tokens`
with one number from each request's own generator) and text is `TextDecoder`, the same code `foresight sample`
runs, so a greedy request served here gives the tokens `foresight sample --temperature 0` gives, and a seeded one
the same draws.

All model work happens on the engine's own thread; `submit` may be called from any thread, and a request's
`on_output` callback is called on the engine thread (the HTTP layer hands each output to its event loop).
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from foresight.errors import ForesightError
from foresight.model.generate import (TextDecoder, Tokenizer, check_sampling, draw_tokens, make_generator,
                                      sample_next_token, sampling_probs, token_logprobs)
from foresight.model.transformer import KVCache, Transformer


class QueueFull(ForesightError):
    """The waiting queue is at its limit (the HTTP layer answers 429)."""


class EngineClosed(ForesightError):
    """The engine is shutting down and takes no new requests (503)."""


class ContextTooLong(ForesightError):
    """The prompt plus the tokens asked for do not fit the model's context (400)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None  # choice i of a request draws from a generator seeded with seed + i
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] | None = None  # None: the tokenizer's end-of-text tokens
    logprobs: int | None = None  # None: no log-probabilities; k >= 0: the chosen token's and the k most likely


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]  # (token id, log-probability), most likely first


@dataclass
class Output:
    """What one step produced for one choice: text that is now certain (may be empty while a character or a
    possible stop string is incomplete), the new token ids and their log-probabilities, and, on its last output,
    why it finished ("stop", "length", or "error" with `error` saying what went wrong)."""
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob]
    finish_reason: str | None = None
    error: str | None = None


class Metrics(Protocol):
    def add_prompt_tokens(self, n: int) -> None: ...
    def observe_first_token(self, seconds: float) -> None: ...
    def observe_next_token(self, seconds: float) -> None: ...


class Request:
    """A submitted request: its handle for the caller (`cancel`) and its state for the engine."""

    _ids = itertools.count()

    def __init__(self, prompt: list[int], params: SamplingParams, n: int, on_output: Callable[[Output], None],
                 images: torch.Tensor | None = None):
        self.id = next(Request._ids)
        self.prompt, self.params, self.n, self.on_output = prompt, params, n, on_output
        self.images = images  # [k, 3, S, S] for a vision-language model's placeholders, in prompt order
        self.submitted = time.perf_counter()
        self.cancelled = False
        self.unfinished = n
        self.prefilled = 0  # prompt tokens already in `prefill_cache` (a long prompt is prefilled in chunks)
        self.prefill_cache: KVCache | None = None

    def cancel(self) -> None:
        """Stop generating for this request (e.g. its client went away); its rows are freed at the next step."""
        self.cancelled = True


class _Choice:
    """One sequence being generated: a row of the running batch."""

    def __init__(self, request: Request, index: int, tokenizer: Tokenizer, stop_ids: frozenset[int], device):
        params = request.params
        self.request, self.index, self.stop_ids = request, index, stop_ids
        self.generator = make_generator(None if params.seed is None else params.seed + index, device)
        self.decoder = TextDecoder(tokenizer, params.stop)
        self.tokens: list[int] = []
        self.length = len(request.prompt)  # tokens in its cache row
        self.last: int | None = None  # the token to feed at the next step
        self.finish_reason: str | None = None
        self.last_time: float | None = None


class Engine:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, *, max_batch: int = 16, max_queue: int = 64,
                 prefill_chunk: int = 512, metrics: Metrics | None = None):
        if max_batch < 1 or max_queue < 0 or prefill_chunk < 1:
            raise ForesightError(f"max_batch ({max_batch}) and prefill_chunk ({prefill_chunk}) must be >= 1, "
                                 f"max_queue ({max_queue}) >= 0")
        self.model, self.tokenizer, self.metrics = model, tokenizer, metrics
        self.max_batch, self.max_queue, self.prefill_chunk = max_batch, max_queue, prefill_chunk
        self.context_length = model.cfg.max_seq_len
        # A vision-language model: requests may carry images, read in their prefill (never chunked, so that no
        # image is split across two forward passes); its placeholder id is never sampled.
        self.image_token_id = getattr(model, "image_token_id", None)
        weight = model.embed.weight
        self.device = weight.device
        with torch.inference_mode():
            self.cache = KVCache(model.cfg, max_batch, min(256, self.context_length), device=self.device,
                                 dtype=weight.dtype)
        self._lock = threading.Condition()
        self._waiting: deque[Request] = deque()  # submitted, not yet admitted
        self._prefilling: list[Request] = []  # admitted, prompt not yet (fully) run
        self._running: list[_Choice] = []  # row i of the cache is _running[i]
        self._closed = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ----- the caller's side -----------------------------------------------------------------------------------------

    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._loop, name="foresight-engine", daemon=True)
        self._thread.start()
        return self

    def submit(self, prompt: Sequence[int], params: SamplingParams, on_output: Callable[[Output], None],
               n: int = 1, images: torch.Tensor | None = None) -> Request:
        """Queue a request; raises ForesightError (bad request), ContextTooLong, QueueFull or EngineClosed.
        `images` [k, 3, S, S] fill the prompt's k runs of image placeholders (a vision-language model only)."""
        prompt = [int(t) for t in prompt]
        if self.image_token_id is not None:  # checked here, so a bad request never reaches a batch
            self.model.check_placeholders(prompt.count(self.image_token_id), 0 if images is None else len(images))
        elif images is not None:
            raise ForesightError("this model reads text only: a request with images cannot be served")
        check_sampling(params.temperature, params.top_k, params.top_p)
        if not prompt:
            raise ForesightError("the prompt is empty: generation needs at least one token to start from")
        vocab = self.model.cfg.vocab_size
        bad = next((t for t in prompt if not 0 <= t < vocab), None)
        if bad is not None:
            raise ForesightError(f"token id {bad} is outside the model's vocabulary (size {vocab})")
        if not 1 <= n <= self.max_batch:
            raise ForesightError(f"n must be between 1 and the server's batch size {self.max_batch}, not {n}")
        if params.seed is not None and not -2**63 <= params.seed <= 2**63 - n:
            raise ForesightError(f"seed must be a 64-bit integer, not {params.seed}")
        if params.max_tokens < 1:
            raise ForesightError(f"max_tokens must be >= 1, not {params.max_tokens}")
        if len(prompt) + params.max_tokens > self.context_length:
            raise ContextTooLong(
                f"this model's context length is {self.context_length} tokens, but the prompt has {len(prompt)} "
                f"tokens and {params.max_tokens} more were asked for ({len(prompt) + params.max_tokens} in all); "
                f"shorten the prompt or ask for at most {max(self.context_length - len(prompt), 0)} tokens")
        request = Request(prompt, params, n, on_output, images)
        with self._lock:
            if self._closed:
                raise EngineClosed("the server is shutting down and takes no new requests")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the server is busy: {len(self._waiting)} requests are already waiting "
                                f"(the limit is {self.max_queue}); try again shortly")
            self._waiting.append(request)
            self._lock.notify()
        return request

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def idle(self) -> bool:
        return not (self._waiting or self._prefilling or self._running)

    def close(self) -> None:
        """Take no new requests; those already submitted still finish (see `wait_idle`)."""
        with self._lock:
            self._closed = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted request has finished; False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        while not self.idle:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """End the engine thread (requests still running get no more output)."""
        with self._lock:
            self._closed = self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams],
                 images: Sequence[torch.Tensor | None] | None = None) -> list[list[Output]]:
        """Blocking convenience for in-process callers (rollouts, evals): every prompt's outputs, in order, each a
        list of its outputs for choice 0; `params` for all prompts or one each (e.g. each its own seed);
        `images[i]` ([k, 3, S, S] or None) fills prompt i's image placeholders. The engine must be started."""
        each = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(each) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(each)} sampling settings")
        done = [threading.Event() for _ in prompts]
        outputs: list[list[Output]] = [[] for _ in prompts]

        def collector(i):
            def on_output(out: Output):
                outputs[i].append(out)
                if out.finish_reason is not None:
                    done[i].set()
            return on_output

        # All submitted under the engine's lock, so its thread admits them together rather than whichever had
        # arrived when it woke: the batches, and with them a seeded run's samples, then do not depend on timing.
        with self._lock:
            for i, prompt in enumerate(prompts):
                self.submit(prompt, each[i], collector(i), images=images[i] if images is not None else None)
        for event in done:
            event.wait()
        return outputs

    # ----- the engine thread ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self.idle and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
            try:
                self.step()
            except Exception as e:  # never seen; if it happens, fail what is in flight and keep serving
                traceback.print_exc()
                self._fail_all(f"internal error in the engine: {type(e).__name__}: {e}")

    def step(self) -> None:
        """One engine step (see the module docstring). The engine thread calls it in a loop; a test may call it
        itself, without `start`, to control exactly when requests join."""
        with torch.inference_mode():
            self._drop_cancelled()  # first, so that a cancelled request's rows go to a waiting one at once
            with self._lock:
                self._admit()
            if self._prefilling:
                self._prefill_step()
            if self._running:
                self._decode_step()

    def _rows_in_use(self) -> int:
        return len(self._running) + sum(r.n for r in self._prefilling)

    def _admit(self) -> None:
        while self._waiting:
            request = self._waiting[0]
            if request.cancelled:
                self._waiting.popleft()
                continue
            if self._rows_in_use() + request.n > self.max_batch:
                return
            self._prefilling.append(self._waiting.popleft())
            if self.metrics is not None:
                self.metrics.add_prompt_tokens(len(request.prompt))

    def _drop_cancelled(self) -> None:
        self._prefilling = [r for r in self._prefilling if not r.cancelled]
        self._release(lambda c: c.request.cancelled)

    def _release(self, leaving: Callable[[_Choice], bool]) -> None:
        """Remove the running sequences for which `leaving` is true; the last rows move into the freed ones."""
        row = 0
        while row < len(self._running):
            if not leaving(self._running[row]):
                row += 1
                continue
            last = len(self._running) - 1
            if row != last:
                moved = self._running[last]
                self.cache.copy_row(row, self.cache, last, moved.length)
                self._running[row] = moved
            self._running.pop()

    def _ensure_room(self, length: int) -> None:
        if length > self.cache.max_len:
            self.cache.grow(min(self.context_length, max(2 * self.cache.max_len, length)))

    # ----- prefill -------------------------------------------------------------------------------------------------

    def _prefill_step(self) -> None:
        """Run one group of whole short prompts, or one chunk of a long one; requests whose prompt is done join
        the running batch with their first token."""
        head = self._prefilling[0]
        if head.prefilled or (len(head.prompt) > self.prefill_chunk and head.images is None):
            self._prefill_chunk(head)
            return
        group, width = [], 0
        for request in self._prefilling:
            wider = max(width, len(request.prompt))
            long = len(request.prompt) > self.prefill_chunk  # prefilled in chunks, or (with images) alone
            if request.prefilled or (long and (group or request.images is None)) or \
                    (group and wider * (len(group) + 1) > self.prefill_chunk):
                break
            group.append(request)
            width = wider
            if long:
                break
        lengths = [len(r.prompt) for r in group]
        ids = torch.tensor([r.prompt + [0] * (width - len(r.prompt)) for r in group], device=self.device)
        cache = KVCache(self.model.cfg, len(group), width, device=self.device, dtype=self.cache.keys[0].dtype)
        images = [r.images for r in group if r.images is not None]
        extra = {"images": torch.cat(images).to(self.device)} if images else {}
        hidden = self.model.hidden_states(ids, cache=cache, **extra)
        last = torch.tensor(lengths, device=self.device) - 1
        logits = self.model.logits(hidden[torch.arange(len(group), device=self.device), last])
        del self._prefilling[:len(group)]
        for row, request in enumerate(group):
            self._join(request, cache, row, logits[row: row + 1])

    def _prefill_chunk(self, request: Request) -> None:
        if request.prefill_cache is None:
            request.prefill_cache = KVCache(self.model.cfg, 1, len(request.prompt), device=self.device,
                                            dtype=self.cache.keys[0].dtype)
        start = request.prefilled
        chunk = request.prompt[start: start + self.prefill_chunk]
        hidden = self.model.hidden_states(torch.tensor([chunk], device=self.device), cache=request.prefill_cache)
        request.prefilled += len(chunk)
        if request.prefilled < len(request.prompt):
            return
        self._prefilling.remove(request)
        cache, request.prefill_cache = request.prefill_cache, None
        self._join(request, cache, 0, self.model.logits(hidden[:, -1]))

    def _join(self, request: Request, cache: KVCache, row: int, logits: torch.Tensor) -> None:
        """Give each choice of a prefilled request a row of the running batch, and its first token."""
        if request.cancelled:
            return
        params = request.params
        stop_ids = frozenset(self.tokenizer.eos_ids if params.stop_token_ids is None else params.stop_token_ids)
        self._ensure_room(len(request.prompt) + 1)
        logits = logits.float()
        for index in range(request.n):
            choice = _Choice(request, index, self.tokenizer, stop_ids, self.device)
            self.cache.copy_row(len(self._running), cache, row, len(request.prompt))
            self._running.append(choice)
            self._choose([choice], logits)
        self._release(lambda c: c.finish_reason is not None)

    # ----- decode --------------------------------------------------------------------------------------------------

    def _decode_step(self) -> None:
        running = self._running
        self._ensure_room(max(c.length for c in running) + 1)
        view = self.cache.view(len(running))
        view.set_lengths([c.length for c in running])
        tokens = torch.tensor([[c.last] for c in running], device=self.device)
        logits = self.model(tokens, cache=view)[:, -1].float()
        for choice in running:
            choice.length += 1
        self._choose(running, logits)
        self._release(lambda c: c.finish_reason is not None)

    def _choose(self, choices: list[_Choice], logits: torch.Tensor) -> None:
        """Pick each choice's next token from its row of logits [len(choices), vocab], with its own settings."""
        if self.image_token_id is not None:
            logits = logits.clone()
            logits[:, self.image_token_id] = float("-inf")
        chosen = [0] * len(choices)
        greedy = [i for i, c in enumerate(choices) if c.request.params.temperature == 0]
        if greedy:  # one argmax for all of them
            picks = sample_next_token(logits[greedy] if len(greedy) < len(choices) else logits)
            for i, token in zip(greedy, picks.tolist()):
                chosen[i] = token
        sampled: dict[tuple, list[int]] = {}  # rows with the same settings share one distribution computation
        for i, c in enumerate(choices):
            p = c.request.params
            if p.temperature != 0:
                sampled.setdefault((p.temperature, p.top_k, p.top_p), []).append(i)
        for (temperature, top_k, top_p), rows in sampled.items():
            probs = sampling_probs(logits[rows], temperature, top_k, top_p)
            # one number from each choice's own generator: its draws do not depend on the rest of the batch
            uniforms = torch.cat([torch.rand(1, dtype=torch.float64, device=logits.device,
                                             generator=choices[i].generator) for i in rows])
            for i, token in zip(rows, draw_tokens(probs, uniforms).tolist()):
                chosen[i] = token
        with_logprobs = [i for i, c in enumerate(choices) if c.request.params.logprobs is not None]
        logprobs: dict[int, TokenLogprob] = {}
        if with_logprobs:
            top = max(choices[i].request.params.logprobs for i in with_logprobs)
            rows = torch.tensor(with_logprobs, device=logits.device)
            picked = torch.tensor([chosen[i] for i in with_logprobs], device=logits.device)
            values, top_values, top_ids = token_logprobs(logits[rows], picked, top)
            for j, i in enumerate(with_logprobs):
                k = choices[i].request.params.logprobs
                logprobs[i] = TokenLogprob(chosen[i], float(values[j]),
                                           list(zip(top_ids[j, :k].tolist(), top_values[j, :k].tolist())))
        for i, c in enumerate(choices):
            self._accept(c, chosen[i], logprobs.get(i))

    def _accept(self, c: _Choice, token: int, logprob: TokenLogprob | None) -> None:
        now = time.perf_counter()
        if self.metrics is not None:
            if c.last_time is None:
                self.metrics.observe_first_token(now - c.request.submitted)
            else:
                self.metrics.observe_next_token(now - c.last_time)
        c.last_time = now
        if token in c.stop_ids:  # the end of the reply: not part of it
            self._emit(c, Output(c.index, c.decoder.flush(), [], [], "stop"))
            return
        c.tokens.append(token)
        c.last = token
        text = c.decoder.push(token)
        reason = None
        if c.decoder.stopped:
            reason = "stop"
        elif len(c.tokens) >= c.request.params.max_tokens:
            reason = "length"
            text += c.decoder.flush()
        self._emit(c, Output(c.index, text, [token], [logprob] if logprob else [], reason))

    def _emit(self, c: _Choice, output: Output) -> None:
        if output.finish_reason is not None:
            c.finish_reason = output.finish_reason
            c.request.unfinished -= 1
        try:
            c.request.on_output(output)
        except Exception:  # a consumer's bug must not stop the engine
            traceback.print_exc()
            c.request.cancel()

    def _fail_all(self, message: str) -> None:
        for c in self._running:
            if c.finish_reason is None:
                self._emit(c, Output(c.index, "", [], [], "error", message))
        for request in self._prefilling:
            for index in range(request.n):
                request.on_output(Output(index, "", [], [], "error", message))
        self._running.clear()
        self._prefilling.clear()
