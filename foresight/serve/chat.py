"""A multi-turn conversation with a chat model: the history, the prompt built from it, and streamed replies.

The terminal chat (`foresight chat`) uses it, and so can an API server: one `ChatSession` per conversation. Each
reply re-encodes the whole history with the model's chat template (templates may render earlier turns differently
from how they were generated, so reusing the previous turn's KV cache could give a different prompt than the
template's). When the history no longer fits in the context window with room for a reply, the oldest turns are
dropped, the system message always kept.
"""

from __future__ import annotations

from typing import Iterator

from foresight.errors import ForesightError
from foresight.model.generate import stream_text
from foresight.weights.load import NO_TEMPLATE, LoadedModel


class ChatSession:
    def __init__(self, loaded: LoadedModel, system: str | None = None, *, max_new_tokens: int = 512,
                 **sampling):
        if not loaded.chat_template:
            raise ForesightError(f"{loaded.name}: {NO_TEMPLATE}")
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.system = [{"role": "system", "content": system}] if system else []
        self.turns: list[dict] = []  # user and assistant messages, oldest first
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling  # temperature, top_k, top_p, seed, stop, ...
        self.dropped_turns = 0  # how many old messages were dropped to fit the context window

    @property
    def messages(self) -> list[dict]:
        return self.system + self.turns

    def _prompt(self) -> tuple[list[int], int]:
        """The prompt's token ids and how many new tokens fit after it, dropping the oldest turns if needed."""
        limit = self.model.cfg.max_seq_len
        while True:
            prompt = self.tokenizer.apply_chat_template(self.messages)
            room = limit - len(prompt)
            # Drop whole user+assistant pairs, never the message just asked.
            if room >= min(self.max_new_tokens, limit // 4) or len(self.turns) <= 1:
                break
            del self.turns[:2]
            self.dropped_turns += 2
        if room < 1:
            self.turns.pop()  # the message just asked does not fit at all: leave the history as it was
            raise ForesightError(f"the message is too long: its prompt is {len(prompt)} tokens, and the model's "
                                 f"context length is {limit}")
        return prompt, min(self.max_new_tokens, room)

    def reply(self, user_text: str) -> Iterator[str]:
        """Ask `user_text`; yields the reply as text pieces as they are generated, then records it in the history
        (a reply abandoned half-way by the caller is recorded as far as it went)."""
        self.turns.append({"role": "user", "content": user_text})
        prompt, max_new = self._prompt()
        pieces: list[str] = []
        try:
            for piece in stream_text(self.model, self.tokenizer, prompt, max_new_tokens=max_new, **self.sampling):
                pieces.append(piece)
                yield piece
        finally:
            self.turns.append({"role": "assistant", "content": "".join(pieces)})
