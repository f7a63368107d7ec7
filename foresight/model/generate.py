"""Text generation with a KV cache: greedy and sampled decoding, batched prompts, stop conditions, streaming.

Three layers, each usable on its own:

- `sample_next_token`: last-position logits -> next token ids (greedy, temperature, top-k, top-p), in float32;
  `sampling_probs` and `draw_tokens` are its two halves, for callers that draw each row with its own generator.
- `Generation`: decodes a batch of token prompts step by step with one pre-allocated `KVCache`. `generate` runs it
  to the end and returns the new tokens; `stream` yields every step's new tokens as they come.
- `TextDecoder`, `generate_text`, `stream_text`: the same on text, with a tokenizer (`encode`, `decode`, `eos_ids`),
  stop strings and incremental detokenization that never splits a multi-byte character.

Batched prompts of different lengths are padded on the right to a common length and run through the model in one
causal forward pass: in a causal model the pad tokens after a prompt change nothing before them. Each row's first
new token comes from the hidden state at its own last real position, and its KV-cache length is set to its prompt
length, so its next token overwrites the first pad slot. From then on every row decodes at its own offset and
positions (the cache keeps a length per row), and the default attention mask hides the pad slots not yet
overwritten.

Speed: one forward per step on tokens [rows, 1]; the cache is written in place; the only host-device synchronisation
per step is reading the new token ids, which stop conditions and streaming need anyway. Rows that finish are dropped
from the batch (and the cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import torch

from foresight.errors import ForesightError
from foresight.model.transformer import KVCache, Transformer


# ----- choosing the next token ---------------------------------------------------------------------------------------


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if not temperature >= 0:  # also refuses NaN
        raise ForesightError(f"temperature must be >= 0 (0 = greedy), not {temperature}")
    if top_k < 0:
        raise ForesightError(f"top_k must be >= 0 (0 = off), not {top_k}")
    if not 0 < top_p <= 1:
        raise ForesightError(f"top_p must be in (0, 1] (1 = off), not {top_p}")


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids [B] from logits [B, vocab].

    temperature 0 picks the most likely token. Otherwise the logits are divided by the temperature, cut to the
    top_k most likely tokens (0 = no cut), then to the smallest set whose probabilities sum to at least top_p
    (1 = no cut; the most likely token always stays), and one token is drawn per row with one uniform number from
    `generator` (`draw_tokens`). Works in float32 whatever the model's dtype, so that bf16 rounding does not change
    which tokens survive a cut.
    """
    if temperature == 0:
        return logits.float().argmax(dim=-1)
    probs = sampling_probs(logits, temperature, top_k, top_p)
    uniforms = torch.rand(probs.shape[0], dtype=torch.float64, device=probs.device, generator=generator)
    return draw_tokens(probs, uniforms)


def sampling_probs(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The distribution [B, vocab] that `sample_next_token` draws from (temperature > 0), in float32."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        # Probability mass strictly before each token: a token stays while that mass is still below top_p.
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        cut = mass_before >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(cut, float("-inf")))
    return logits.softmax(dim=-1)


def draw_tokens(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of probs [B, vocab], by inverse CDF with uniforms [B] in [0, 1): the first token whose
    cumulative probability exceeds u times the row's total. A row's draw depends only on its own probabilities and
    number, so a request sampled in a batch draws what it draws alone; and on a CPU it costs a fraction of
    `torch.multinomial` over a 49k vocabulary (docs/benchmarks.md). Float64 sums, so that the rarest tokens keep
    their share and a zero-probability token (cut, or -inf) can never be drawn."""
    cdf = probs.double().cumsum(dim=-1)
    target = (uniforms.to(cdf.dtype) * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def token_logprobs(logits: torch.Tensor, chosen: torch.Tensor, top: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities under the model's own distribution (before temperature and cuts, as OpenAI reports them)
    from logits [B, vocab]: of the chosen tokens [B], and the `top` most likely tokens' values and ids [B, top]."""
    logp = logits.float().log_softmax(dim=-1)
    chosen_logp = logp.gather(-1, chosen[:, None]).squeeze(-1)
    values, ids = logp.topk(top, dim=-1) if top > 0 else (logp[:, :0], chosen[:, None][:, :0])
    return chosen_logp, values, ids


def make_generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A torch.Generator for sampling: a given one as is, a fresh one for an int seed, None (global RNG) for None."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(int(seed))


# ----- decoding token prompts ----------------------------------------------------------------------------------------


class Generation:
    """Decodes a batch of prompts (token ids) with one KV cache, one step per call of `step()` (or iterate).

    `tokens[row]` holds each row's new tokens so far (stop tokens excluded); `finish_reasons[row]` becomes "stop"
    (a stop token, or `finish(row)` called, e.g. for a stop string) or "length" (max_new_tokens reached).
    """

    def __init__(
        self,
        model: Transformer,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        stop_token_ids: Sequence[int] = (),
        min_new_tokens: int = 0,
        seed: int | torch.Generator | None = None,
        images: torch.Tensor | None = None,
    ):
        check_sampling(temperature, top_k, top_p)
        prompts = [list(p) for p in prompts]
        if not prompts:
            raise ForesightError("no prompts to generate from")
        if any(len(p) == 0 for p in prompts):
            raise ForesightError("a prompt is empty: generation needs at least one token to start from")
        if max_new_tokens < 0:
            raise ForesightError(f"max_new_tokens must be >= 0, not {max_new_tokens}")
        longest = max(len(p) for p in prompts)
        limit = model.cfg.max_seq_len
        if longest + max_new_tokens > limit:
            raise ForesightError(
                f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) = {longest + max_new_tokens} "
                f"exceeds the model's context length max_seq_len = {limit}; shorten the prompt or ask for fewer "
                f"new tokens (at most {max(limit - longest, 0)} here)")
        vocab = model.cfg.vocab_size
        bad = [t for p in prompts for t in p if not 0 <= t < vocab]
        if bad:
            raise ForesightError(f"token id {bad[0]} is outside the model's vocabulary (size {vocab})")

        self.model = model
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.stop_token_ids = frozenset(int(t) for t in stop_token_ids)
        self.tokens: list[list[int]] = [[] for _ in prompts]
        self.finish_reasons: list[str | None] = ["length" if max_new_tokens == 0 else None] * len(prompts)

        weight = model.embed.weight
        device = weight.device
        self.generator = make_generator(seed, device)
        self._stop_ids = torch.tensor(sorted(self.stop_token_ids), dtype=torch.long, device=device)
        self._active = list(range(len(prompts)))  # original row of each row still in the batch
        self._last: torch.Tensor | None = None  # the tokens sampled at the previous step, fed at the next
        self._prompts = prompts  # until the first step
        # A vision-language model reads `images` at its placeholder tokens in the prompts (the prefill only: the
        # image is in the KV cache after it) and must never sample a placeholder itself.
        self._images = images
        self._banned = getattr(model, "image_token_id", None)
        # The last generated token is never fed back, hence the - 1.
        total = longest + max(max_new_tokens - 1, 0)
        with torch.inference_mode():
            self.cache = KVCache(model.cfg, len(prompts), total, device=device, dtype=weight.dtype)

    @property
    def done(self) -> bool:
        return all(reason is not None for reason in self.finish_reasons)

    def finish(self, row: int) -> None:
        """Stop generating for this row (its tokens so far stay); it leaves the batch at the next step."""
        if self.finish_reasons[row] is None:
            self.finish_reasons[row] = "stop"

    def _drop_finished_rows(self) -> None:
        keep = [i for i, row in enumerate(self._active) if self.finish_reasons[row] is None]
        if len(keep) == len(self._active):
            return
        self.cache.reorder(keep)
        self._last = self._last[torch.tensor(keep, device=self._last.device)]
        self._active = [self._active[i] for i in keep]

    def _prefill(self) -> torch.Tensor:
        """The prompts' forward pass, right-padded: logits [rows, vocab] at each row's last real token."""
        model, cache, prompts = self.model, self.cache, self._prompts
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        device = cache.lengths.device
        ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts], device=device)
        hidden = model.hidden_states(ids, cache=cache, **({} if self._images is None else {"images": self._images}))
        last = torch.tensor(lengths, device=device) - 1
        # Only these positions go through the output head; the others were needed only for their keys and values.
        logits = model.logits(hidden[torch.arange(len(prompts), device=device), last])
        cache.set_lengths(lengths)  # the pad slots are past each row's length: hidden, then overwritten
        self._prompts = self._images = None
        return logits

    def _next_logits(self) -> torch.Tensor:
        """Logits [rows, vocab] for the next token of every active row (the prompt's forward on the first call)."""
        if self._last is None:
            return self._prefill()
        self._drop_finished_rows()
        return self.model(self._last[:, None], cache=self.cache)[:, -1]

    def step(self) -> list[int | None]:
        """Generate one token for every unfinished row. Returns, per original row, the new token id, or None if
        the row is finished (before this step, or now by a stop token, which is not returned)."""
        if self.done:
            raise RuntimeError("generation is finished")
        with torch.inference_mode():
            logits = self._next_logits().float()
            if len(self.tokens[self._active[0]]) < self.min_new_tokens and len(self._stop_ids):
                logits[:, self._stop_ids] = float("-inf")  # all active rows have the same count so far
            if self._banned is not None:
                logits[:, self._banned] = float("-inf")
            chosen = sample_next_token(logits, self.temperature, self.top_k, self.top_p, self.generator)
            self._last = chosen
        new: list[int | None] = [None] * len(self.tokens)
        for row, token in zip(self._active, chosen.tolist()):
            if token in self.stop_token_ids:
                self.finish_reasons[row] = "stop"
                continue
            self.tokens[row].append(token)
            new[row] = token
            if len(self.tokens[row]) >= self.max_new_tokens:
                self.finish_reasons[row] = "length"
        return new

    def __iter__(self) -> Iterator[list[int | None]]:
        while not self.done:
            yield self.step()


def generate(model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int = 256,
             **options) -> list[list[int]]:
    """New token ids for each prompt (stop tokens not included). `options` are Generation's: temperature, top_k,
    top_p, stop_token_ids, min_new_tokens, seed."""
    run = Generation(model, prompts, max_new_tokens=max_new_tokens, **options)
    for _ in run:
        pass
    return run.tokens


def stream(model: Transformer, prompts: Sequence[Sequence[int]], **kwargs) -> Iterator[list[int | None]]:
    """Per step, each prompt's new token id (None once that prompt is finished). Arguments as for `generate`."""
    return iter(Generation(model, prompts, **kwargs))


# ----- text ----------------------------------------------------------------------------------------------------------


class Tokenizer(Protocol):
    eos_ids: list[int]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def encode_prompt(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of a plain-text prompt: the tokenizer's document-start tokens (if it has any) and the text. An
    empty prompt becomes the end-of-text token, i.e. "start a new document" (unconditional sampling)."""
    ids = list(getattr(tokenizer, "bos_ids", None) or []) + tokenizer.encode(text)
    if not ids:
        if not tokenizer.eos_ids:
            raise ForesightError("the prompt is empty and the tokenizer has no end-of-text token to start from")
        ids = [tokenizer.eos_ids[0]]
    return ids


class TextDecoder:
    """Turns one row's new tokens into text, piece by piece, and watches for stop strings.

    `push(token)` returns the text that is now certain: never half of a multi-byte character (the decoder shows
    U+FFFD until all its bytes have arrived), never a tail that might still grow into a stop string. Once a stop
    string appears, `stopped` is True and the text ends just before it.

    Decoding is incremental (the technique of Hugging Face's and vLLM's streaming detokenizers): only the tokens
    since the last complete character are decoded again, together with a few before them, because some tokenizers
    (SentencePiece) decode a token differently at the start of a text than after another one.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.text = ""  # everything decoded so far (may extend past a stop string until `stopped`)
        self.emitted = 0  # characters of self.text already returned
        self.stopped = False
        self._prefix_offset = 0  # decode from here ...
        self._read_offset = 0  # ... and the text up to here has already been added to self.text

    def _decode_new(self, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix_offset: self._read_offset])
        after = decode(self.ids[self._prefix_offset:])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""  # nothing new, or a character still incomplete
        self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
        return after[len(before):]

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        self.text += self._decode_new(final)
        # A stop string can only start at or after self.emitted: anything before was held back if it could begin one.
        hits = [i for i in (self.text.find(s, self.emitted) for s in self.stop) if i >= 0]
        if hits:
            end = min(hits)
            self.text, self.stopped = self.text[:end], True
        else:
            end = len(self.text) if final else len(self.text) - self._stop_prefix_len()
        piece, self.emitted = self.text[self.emitted: end], max(end, self.emitted)
        return piece

    def _stop_prefix_len(self) -> int:
        """Length of the longest end of self.text that is the beginning of a stop string (held back for now)."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text) - self.emitted), longest, -1):
                if self.text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def push(self, token: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token)
        return self._release(final=False)

    def flush(self) -> str:
        """The text still held back, once generation has ended without a stop string."""
        return self._release(final=True)


@dataclass
class Completion:
    text: str
    token_ids: list[int]  # every token generated, stop tokens excluded (may run past a stop string's start)
    finish_reason: str  # "stop" (stop token or string) or "length"


def _prompt_ids(tokenizer: Tokenizer, prompt: str | Sequence[int]) -> list[int]:
    return encode_prompt(tokenizer, prompt) if isinstance(prompt, str) else list(prompt)


def _text_generation(model, tokenizer, prompts, stop_token_ids, **kwargs) -> Generation:
    if stop_token_ids is None:
        stop_token_ids = tokenizer.eos_ids
    return Generation(model, [_prompt_ids(tokenizer, p) for p in prompts], stop_token_ids=stop_token_ids, **kwargs)


def generate_text(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str | Sequence[int]],
    *,
    max_new_tokens: int = 256,
    stop: Sequence[str] = (),
    stop_token_ids: Sequence[int] | None = None,
    **kwargs,
) -> list[Completion]:
    """Completions of text prompts (or token-id prompts, e.g. from a chat template), batched.

    stop: strings that end a completion (not included in its text). stop_token_ids: tokens that end it (default:
    the tokenizer's end-of-text tokens). Other keyword arguments (temperature, top_k, top_p, min_new_tokens, seed)
    as for `generate`.
    """
    run = _text_generation(model, tokenizer, prompts, stop_token_ids, max_new_tokens=max_new_tokens, **kwargs)
    decoders = [TextDecoder(tokenizer, stop) for _ in prompts]
    for new in run:
        for row, token in enumerate(new):
            if token is not None:
                decoders[row].push(token)
                if decoders[row].stopped:
                    run.finish(row)
    for d in decoders:
        d.flush()
    return [Completion(d.text, run.tokens[row], "stop" if d.stopped else run.finish_reasons[row])
            for row, d in enumerate(decoders)]


def stream_text(
    model: Transformer,
    tokenizer: Tokenizer,
    prompt: str | Sequence[int],
    *,
    max_new_tokens: int = 256,
    stop: Sequence[str] = (),
    stop_token_ids: Sequence[int] | None = None,
    **kwargs,
) -> Iterator[str]:
    """The completion of one prompt as text pieces, yielded as soon as they are certain (arguments as for
    `generate_text`). Joined, the pieces equal `generate_text(...)[0].text` with the same seed."""
    run = _text_generation(model, tokenizer, [prompt], stop_token_ids, max_new_tokens=max_new_tokens, **kwargs)
    decoder = TextDecoder(tokenizer, stop)
    for (token,) in run:
        if token is not None:
            piece = decoder.push(token)
            if piece:
                yield piece
            if decoder.stopped:
                return
    piece = decoder.flush()
    if piece:
        yield piece
