"""The model side of evaluation: three request types over any MODEL that foresight.weights.load reads.

    loglikelihood(context, continuation) -> (sum of log p(continuation tokens | context), whether greedy)
    loglikelihood_rolling(text)           -> (sum of log p over every token of text, token count)
    generate_until(context, stop, ...)    -> completion text
    generate_chat(prompt ids, ...)        -> the reply to a conversation rendered with the model's chat template

Tokenization follows lm-evaluation-harness's rules, so that both score the same tokens: trailing whitespace of a
context moves to the start of its continuation; the continuation's tokens are those of encode(context +
continuation) after the first len(encode(context)) (a merge across the boundary is not split apart); an empty
context becomes the document-start token; a sequence longer than the model's context loses tokens on the left.

Speed (the work is forward passes, so the aim is fewer and cheaper ones):
  - requests that need the same forward pass share it: all four answer letters of an MMLU question are read off one
    pass over the question (same context, one-token continuations);
  - logits are computed only at the positions that are scored: the output projection (49,152 x 576 on SmolLM2, a
    fifth of the per-token work) and the log-softmax run on a few rows instead of the whole sequence;
  - requests whose contexts begin with the same text (a task's preamble and few-shot examples; the request says
    how many characters are shared) run that prefix once and reuse its keys and values from a KV cache;
  - the rest are sorted by length and batched (right-padded: in a causal model, padding after the real tokens
    changes nothing before them, so no mask is needed) up to a token budget per forward pass.
Answers are cached (foresight.evals.cache); the model is loaded only when a request is not in the cache.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from foresight.errors import ForesightError
from foresight.evals.cache import RequestCache, model_identity, request_key
from foresight.model.transformer import KVCache, Transformer


@dataclass(frozen=True)
class Loglikelihood:
    context: str
    continuation: str
    shared: int = field(default=0, compare=False)  # leading characters of context many requests share (speed hint)

    def key(self) -> str:
        return request_key("loglikelihood", {"context": self.context, "continuation": self.continuation})


@dataclass(frozen=True)
class LoglikelihoodRolling:
    text: str

    def key(self) -> str:
        return request_key("loglikelihood_rolling", {"text": self.text})


@dataclass(frozen=True)
class GenerateUntil:
    context: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0  # sample number: with temperature > 0, different seeds give different samples

    def key(self) -> str:
        return request_key("generate_until", asdict(self))


@dataclass(frozen=True)
class GenerateChat:
    """A reply to a conversation: `prompt` is its token ids as the model's chat template renders it (`chat_prompt`),
    so the cache key is the exact prompt the model sees. Generation ends at the tokenizer's end-of-turn tokens, a
    stop string or max_new_tokens."""
    prompt: tuple[int, ...]
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0  # with temperature > 0: the sample's random stream (the same for every prompt of a batch)
    stop: tuple[str, ...] = ()
    # A vision-language model's image ([1, 3, S, S]) for the prompt's placeholders; keyed by its pixels' digest.
    image: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def key(self) -> str:
        fields = {k: getattr(self, k) for k in ("prompt", "max_new_tokens", "temperature", "top_p", "seed", "stop")}
        if self.image is not None:
            fields["image_sha1"] = hashlib.sha1(self.image.detach().cpu().numpy().tobytes()).hexdigest()
        return request_key("generate_chat", fields)


# ----- the forward pass, scoring only what is asked ------------------------------------------------------------------


def output_logprobs(model: Transformer, hidden: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (float32) over the vocabulary from final-norm hidden states [N, d] (model.hidden_states),
    through the model's own output head: callers pick the scored positions first, so the head runs only on them."""
    return F.log_softmax(model.logits(hidden).float(), dim=-1)


@dataclass
class _Sequence:
    """One forward pass's worth of scoring: tokens, and the requests read off it."""
    tokens: list[int]
    first: int  # the first position whose next-token distribution is scored
    prefix: int = 0  # leading tokens computed once for the whole prefix group
    targets: list[tuple[int, list[int]]] = field(default_factory=list)  # (request index, continuation tokens)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def score_token_requests(model: Transformer, requests: list[tuple[list[int], list[int], list[int]]],
                         batch_tokens: int = 4096, max_rows: int = 64, min_prefix: int = 32,
                         on_done: Callable[[list[int], list[tuple[float, bool]]], None] | None = None
                         ) -> list[tuple[float, bool]]:
    """(log-likelihood, greedy) for each (context ids, continuation ids, shared prefix ids) request.

    Contexts must be non-empty and context + continuation at most max_seq_len + 1 tokens. The shared prefix ids
    are a speed hint only: the tokens that the context begins with and that many requests share. `on_done(request
    indices, results)` is called after every batch (for caching and progress)."""
    max_len = model.cfg.max_seq_len
    by_tokens: dict[tuple[int, ...], _Sequence] = {}
    for i, (ctx, cont, shared) in enumerate(requests):
        if not ctx or not cont or len(ctx) + len(cont) > max_len + 1:
            raise ValueError(f"request {i}: context {len(ctx)} and continuation {len(cont)} tokens do not fit")
        # One pass over context + continuation[:-1] scores the whole continuation; requests that differ only in
        # their last continuation token (e.g. answer letters) share it.
        tokens = tuple(ctx + cont[:-1])
        seq = by_tokens.get(tokens)
        if seq is None:
            seq = by_tokens[tokens] = _Sequence(list(tokens), len(ctx) - 1, len(tokens))
        seq.first = min(seq.first, len(ctx) - 1)
        # The shared prefix counts only as far as it really is this sequence's prefix.
        seq.prefix = min(seq.prefix, _common_prefix(shared, tokens))
        seq.targets.append((i, cont))
    for seq in by_tokens.values():
        seq.prefix = min(seq.prefix, seq.first)  # a scored position is never inside the shared prefix

    groups: dict[tuple[int, ...], list[_Sequence]] = {}
    for seq in by_tokens.values():
        groups.setdefault(tuple(seq.tokens[: seq.prefix]), []).append(seq)
    # A prefix is worth sharing only when it is long and shared: otherwise its sequences are scored whole, batched
    # with all the others (on a CPU, 8 rows of 110 tokens run 2.4x faster per token than one; a short prefix saves
    # less than the batching it would prevent).
    for prefix in [p for p, seqs in groups.items() if p and (len(p) < min_prefix or len(seqs) < 2)]:
        for seq in groups.pop(prefix):
            seq.prefix = 0
            groups.setdefault((), []).append(seq)

    results: list[tuple[float, bool] | None] = [None] * len(requests)
    device = model.embed.weight.device
    with torch.inference_mode():
        for prefix, seqs in sorted(groups.items(), key=lambda g: -len(g[0])):
            prefix_cache = None
            if prefix:
                prefix_cache = KVCache(model.cfg, 1, len(prefix), device=device, dtype=model.embed.weight.dtype)
                model.hidden_states(torch.tensor([prefix], device=device), cache=prefix_cache)
            seqs.sort(key=lambda s: -len(s.tokens))
            for batch in _batches(seqs, len(prefix), batch_tokens, max_rows):
                done = _score_batch(model, batch, prefix_cache, len(prefix), device)
                for index, result in done:
                    results[index] = result
                if on_done:
                    on_done([i for i, _ in done], [r for _, r in done])
    return results  # type: ignore[return-value]


def _batches(seqs: list[_Sequence], prefix: int, batch_tokens: int, max_rows: int):
    """Consecutive runs of (length-sorted) sequences whose padded size stays within the token budget."""
    batch: list[_Sequence] = []
    for seq in seqs:
        width = len(batch[0].tokens) - prefix if batch else len(seq.tokens) - prefix
        if batch and (len(batch) + 1 > max_rows or (len(batch) + 1) * width > batch_tokens):
            yield batch
            batch = []
        batch.append(seq)
    if batch:
        yield batch


def _score_batch(model: Transformer, batch: list[_Sequence], prefix_cache: KVCache | None, prefix: int, device):
    width = max(len(s.tokens) for s in batch) - prefix
    rows = torch.tensor([s.tokens[prefix:] + [0] * (width - len(s.tokens) + prefix) for s in batch], device=device)
    cache = None
    if prefix_cache is not None:
        cache = KVCache(model.cfg, len(batch), prefix + width, device=device, dtype=model.embed.weight.dtype)
        for layer in range(model.cfg.n_layers):
            cache.keys[layer][:, :, :prefix] = prefix_cache.keys[layer]
            cache.values[layer][:, :, :prefix] = prefix_cache.values[layer]
        cache.set_lengths(prefix)
    hidden = model.hidden_states(rows, cache=cache)
    # Only the scored positions go through the output projection: row r, positions first .. end of its tokens.
    row_index, pos_index, spans = [], [], []
    for r, s in enumerate(batch):
        start = len(row_index)
        positions = range(s.first - prefix, len(s.tokens) - prefix)
        row_index += [r] * len(positions)
        pos_index += list(positions)
        spans.append(start)
    logprobs = output_logprobs(model, hidden[torch.tensor(row_index, device=device),
                                             torch.tensor(pos_index, device=device)])
    # Gather every request's continuation log-probabilities at once (one device-to-host copy per batch).
    rows_, targets, owners = [], [], []
    for s, start in zip(batch, spans):
        for index, cont in s.targets:
            # The continuation's tokens are predicted from position len(ctx) - 1 on; s.first may lie before that
            # when requests with different context lengths share this pass.
            offset = start + (len(s.tokens) - len(cont)) - s.first
            rows_ += range(offset, offset + len(cont))
            targets += cont
            owners.append((index, len(cont)))
    rows_t, targets_t = torch.tensor(rows_, device=device), torch.tensor(targets, device=device)
    picked = logprobs[rows_t, targets_t].double().cpu().tolist()
    is_greedy = (logprobs[rows_t].argmax(dim=-1) == targets_t).cpu().tolist()
    done, at = [], 0
    for index, n in owners:
        done.append((index, (sum(picked[at: at + n]), all(is_greedy[at: at + n]))))
        at += n
    return done


# ----- the adapter ---------------------------------------------------------------------------------------------------


class EvalModel:
    """A MODEL argument behind the three request types, with batching and the request cache.

    The model is loaded on first need: when every request is cached, nothing is loaded."""

    def __init__(self, spec: str, device: str = "cpu", dtype: str = "float32", use_cache: bool = True,
                 batch_tokens: int | None = None, max_rows: int = 64, generate_rows: int = 8, min_prefix: int = 32,
                 quantize: str | None = None, chat_rows: int | None = None, loaded=None):
        """`loaded`: a model already in memory (a LoadedModel, e.g. at the end of a training run), evaluated
        without the answer cache (its weights have no identity to key the cache by); `spec` is then its name."""
        import difflib

        from foresight.weights.load import BUILTIN_MODELS, check_quantize, resolve

        if loaded is None:
            try:
                resolve(spec)  # an unknown model is refused before anything else
            except ForesightError as e:
                close = difflib.get_close_matches(spec, list(BUILTIN_MODELS), n=1, cutoff=0.6)
                raise ForesightError(f"{e}" + (f" (did you mean {close[0]!r}?)" if close else "")) from None
            check_quantize(quantize, device)  # a bad value or a missing kernel is refused before any work
        else:
            self.__dict__["loaded"] = loaded  # the cached property below, filled
            use_cache = False
        self.spec, self.device, self.dtype, self.quantize = spec, device, dtype, quantize
        # int8 weights answer differently from float ones: they get their own cache.
        self.identity = model_identity(spec, dtype if quantize is None else f"{dtype}+{quantize}") \
            if loaded is None else f"in-memory {spec}"
        self.cache = RequestCache.for_model(self.identity) if use_cache else RequestCache(None)
        # Tokens per forward pass, padding included. On a CPU, ~1,000 keeps a batch's activations in cache: 48 MMLU
        # questions scored ~1.4x faster with 1,024 than with 4,096 (2-core machine, docs/eval.md); a GPU wants more.
        self.batch_tokens = batch_tokens or (1024 if str(device).startswith("cpu") else 16384)
        self.max_rows, self.generate_rows = max_rows, generate_rows
        # Rows the serving engine decodes at once for chat replies (docs/behaviour-evals.md: measured on 2 cores).
        self.chat_rows = chat_rows or 64
        self.min_prefix = min_prefix  # the shortest shared prefix worth computing once (see score_token_requests)
        self.stats = {"cached": 0, "computed": 0}

    @cached_property
    def loaded(self):
        from foresight.vlm.model_io import load_chat_model

        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if self.dtype not in dtypes:
            raise ForesightError(f"--dtype must be one of {', '.join(dtypes)}, not {self.dtype!r}")
        return load_chat_model(self.spec, device=self.device, dtype=dtypes[self.dtype], quantize=self.quantize)

    @property
    def image_size(self) -> int | None:
        """The image encoder's input size, or None for a model that reads text only."""
        vision = getattr(self.loaded.model, "vision", None)
        return vision.image_size if vision is not None else None

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def max_len(self) -> int:
        return self.loaded.model.cfg.max_seq_len

    def start_ids(self) -> list[int]:
        """What a document starts with: the tokenizer's BOS if it adds one, else its end-of-text token (the
        separator between documents in pre-training), else its first end-of-turn token."""
        tok = self.tokenizer
        if tok.bos_ids:
            return list(tok.bos_ids)
        backend = getattr(tok, "backend", None)
        eot = backend.token_to_id("<|endoftext|>") if backend is not None else None
        return [eot] if eot is not None else [tok.eos_ids[0]]

    # ----- caching around a batch computation ---------------------------------------------------------------------

    def _run(self, requests: list, compute: Callable, progress) -> list:
        keys = [r.key() for r in requests]
        found = self.cache.get_many(keys)
        answers = [found.get(k) for k in keys]
        missing = [i for i, a in enumerate(answers) if a is None]
        self.stats["cached"] += len(requests) - len(missing)
        self.stats["computed"] += len(missing)
        if progress is not None:
            progress.update(len(requests) - len(missing))
        if missing:
            def on_done(indices: list[int], results: list) -> None:
                fresh = {}
                for i, result in zip(indices, results):
                    answers[missing[i]] = result
                    fresh[keys[missing[i]]] = result
                self.cache.put_many(fresh)
                if progress is not None:
                    progress.update(len(indices))

            compute([requests[i] for i in missing], on_done)
        return answers

    # ----- loglikelihood ----------------------------------------------------------------------------------------

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return self.start_ids(), tok.encode(continuation)
        start = list(tok.bos_ids)
        ctx = start + tok.encode(context)
        whole = start + tok.encode(context + continuation)
        return ctx, whole[len(ctx):]

    def loglikelihood(self, requests: list[Loglikelihood], progress=None) -> list[tuple[float, bool]]:
        return [tuple(a) for a in self._run(requests, self._loglikelihood, progress)]

    def _loglikelihood(self, requests: list[Loglikelihood], on_done) -> None:
        token_requests, shared_ids = [], {}
        for r in requests:
            ctx, cont = self.encode_pair(r.context, r.continuation)
            if not cont:
                raise ForesightError(f"empty continuation after tokenization: {r.continuation!r}")
            if len(cont) > self.max_len:
                raise ForesightError(f"a continuation of {len(cont)} tokens is longer than the model's context "
                                     f"({self.max_len})")
            excess = len(ctx) + len(cont) - (self.max_len + 1)
            if excess > 0:
                ctx = ctx[excess:]
            shared = []
            if r.shared > 0 and excess <= 0:
                text = r.context[: r.shared]
                if text not in shared_ids:
                    shared_ids[text] = list(self.tokenizer.bos_ids) + self.tokenizer.encode(text)
                shared = shared_ids[text]
            token_requests.append((ctx, cont, shared))
        score_token_requests(self.loaded.model, token_requests, self.batch_tokens, self.max_rows, self.min_prefix,
                             on_done=on_done)

    # ----- loglikelihood_rolling --------------------------------------------------------------------------------

    def loglikelihood_rolling(self, requests: list[LoglikelihoodRolling], progress=None) -> list[tuple[float, int]]:
        return [tuple(a) for a in self._run(requests, self._rolling, progress)]

    def windows(self, text: str) -> list[tuple[list[int], list[int]]]:
        """(context, continuation) token windows that predict every token of `text` exactly once: the first from
        the document-start token, each later window from the token before it, at most max_seq_len per window."""
        tokens = self.tokenizer.encode(text)
        out = []
        for i in range(0, len(tokens), self.max_len):
            context = self.start_ids()[-1:] if i == 0 else [tokens[i - 1]]
            out.append((context, tokens[i: i + self.max_len]))
        return out

    def _rolling(self, requests: list[LoglikelihoodRolling], on_done) -> None:
        token_requests, owner = [], []
        for j, r in enumerate(requests):
            for ctx, cont in self.windows(r.text):
                token_requests.append((ctx, cont, []))
                owner.append(j)
        remaining = [owner.count(j) for j in range(len(requests))]
        totals = [[0.0, 0] for _ in requests]

        def window_done(indices: list[int], results: list) -> None:
            finished = []
            for i, (logprob, _) in zip(indices, results):
                j = owner[i]
                totals[j][0] += logprob
                totals[j][1] += len(token_requests[i][1])
                remaining[j] -= 1
                if remaining[j] == 0:
                    finished.append(j)
            if finished:
                on_done(finished, [tuple(totals[j]) for j in finished])

        empty = [j for j in range(len(requests)) if remaining[j] == 0]
        if empty:
            on_done(empty, [(0.0, 0) for _ in empty])
        if token_requests:
            score_token_requests(self.loaded.model, token_requests, self.batch_tokens, self.max_rows,
                                 on_done=window_done)

    # ----- generate_until ---------------------------------------------------------------------------------------

    def generate_until(self, requests: list[GenerateUntil], progress=None) -> list[str]:
        return self._run(requests, self._generate, progress)

    def _generate(self, requests: list[GenerateUntil], on_done) -> None:
        from foresight.model.generate import generate_text

        tok, model = self.tokenizer, self.loaded.model
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.stop, r.max_new_tokens, r.temperature, r.top_p), []).append(i)
        for (stop, max_new, temperature, top_p), indices in groups.items():
            if max_new >= self.max_len:
                raise ForesightError(f"max_new_tokens {max_new} leaves no room for a prompt in the model's "
                                     f"context ({self.max_len})")
            prompts = {i: (list(tok.bos_ids) + tok.encode(requests[i].context))[-(self.max_len - max_new):]
                       for i in indices}
            indices.sort(key=lambda i: -len(prompts[i]))  # similar lengths together: less padding
            for b in range(0, len(indices), self.generate_rows):
                batch = indices[b: b + self.generate_rows]
                # Sampled completions depend on the batch's seeds (one random stream per batch); greedy ones on nothing.
                seed = None if temperature == 0 else zlib.crc32(repr([requests[i].seed for i in batch]).encode())
                out = generate_text(model, tok, [prompts[i] for i in batch], max_new_tokens=max_new, stop=stop,
                                    temperature=temperature, top_p=top_p, seed=seed)
                on_done(batch, [c.text for c in out])

    # ----- generate_chat ---------------------------------------------------------------------------------------------

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """The token ids of `messages` (system/user turns) plus the assistant's turn opening, rendered by the
        model's own chat template: the tokenizer's apply_chat_template, the one `foresight sample --chat`,
        `foresight chat` and the server use. A model without a template raises NoChatTemplate."""
        self.require_chat_template()
        return self.tokenizer.apply_chat_template(messages)

    def require_chat_template(self) -> None:
        from foresight.weights.load import NO_TEMPLATE

        if not self.tokenizer.chat_template:
            raise NoChatTemplate(f"model {self.spec} {NO_TEMPLATE.removeprefix('this model ')}")

    def generate_chat(self, requests: list[GenerateChat], progress=None) -> list[str]:
        return self._run(requests, self._generate_chat, progress)

    def _generate_chat(self, requests: list[GenerateChat], on_done) -> None:
        """Replies from the serving engine's continuous batching (foresight.serve.engine): up to chat_rows sequences
        decode together, and a finished one's row goes to the next prompt at once. Greedy replies are the tokens
        `foresight sample --temperature 0` gives up to float rounding (a batched matmul sums in another order)."""
        from foresight.serve.engine import Engine, SamplingParams

        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            room = self.max_len - len(r.prompt)
            if room < 1:
                raise ForesightError(f"a chat prompt of {len(r.prompt)} tokens leaves no room for a reply in the "
                                     f"model's context ({self.max_len})")
            params = SamplingParams(max_tokens=min(r.max_new_tokens, room), temperature=r.temperature,
                                    top_p=r.top_p, seed=r.seed if r.temperature > 0 else None, stop=r.stop)
            groups.setdefault(params, []).append(i)
        engine = Engine(self.loaded.model, self.tokenizer, max_batch=self.chat_rows,
                        max_queue=max(len(requests), 1)).start()
        try:
            for params, indices in groups.items():
                indices.sort(key=lambda i: -len(requests[i].prompt))
                # In chunks, so that finished replies reach the cache (and the progress bar) as the run goes; a
                # chunk of several batches keeps the engine's rows full for most of it.
                chunk = 8 * self.chat_rows
                for b in range(0, len(indices), chunk):
                    part = indices[b: b + chunk]
                    outputs = engine.generate([list(requests[i].prompt) for i in part], params,
                                              [requests[i].image for i in part])
                    texts = []
                    for outs in outputs:
                        if outs and outs[-1].finish_reason == "error":
                            raise ForesightError(f"generation failed: {outs[-1].error}")
                        texts.append("".join(o.text for o in outs))
                    on_done(part, texts)
        finally:
            engine.stop()

    def close(self) -> None:
        self.cache.close()


class NoChatTemplate(ForesightError):
    """A chat task was asked of a model that has no chat template."""
