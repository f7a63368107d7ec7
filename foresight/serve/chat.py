"""A multi-turn conversation with a chat model: the history, the prompt built from it, and streamed replies.

The terminal chat (`foresight chat`) uses it, and so can an API server: one `ChatSession` per conversation. Each
reply re-encodes the whole history with the model's chat template (templates may render earlier turns differently
from how they were generated, so reusing the previous turn's KV cache could give a different prompt than the
template's). When the history no longer fits in the context window with room for a reply, the oldest turns are
dropped, the system message always kept.

With a vision-language model (`foresight vlm train`), `attach_image` puts an image at the start of the next user
message; each image stays with its message, and leaves the context with it.
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
        self.reads_images = hasattr(self.model, "image_embeds")
        self.turn_images: list[list] = []  # per message in `turns`: the image tensors [3, S, S] it holds
        self.pending_images: list = []  # attached, for the next user message

    def attach_image(self, image) -> None:
        """Put `image` ([3, S, S] in [0, 1], the encoder's size) before the text of the next user message."""
        if not self.reads_images:
            raise ForesightError("this model reads text only: an image cannot be attached (a model from "
                                 "`foresight vlm train` can read images)")
        self.pending_images.append(image)

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
            del self.turn_images[:2]
            self.dropped_turns += 2
        if room < 1:
            self.turns.pop()  # the message just asked does not fit at all: leave the history as it was
            self.pending_images = self.turn_images.pop()
            raise ForesightError(f"the message is too long: its prompt is {len(prompt)} tokens, and the model's "
                                 f"context length is {limit}")
        return prompt, min(self.max_new_tokens, room)

    def reply(self, user_text: str) -> Iterator[str]:
        """Ask `user_text`; yields the reply as text pieces as they are generated, then records it in the history
        (a reply abandoned half-way by the caller is recorded as far as it went)."""
        images, self.pending_images = self.pending_images, []
        content = user_text if not images else \
            [{"type": "image"} for _ in images] + [{"type": "text", "text": "\n" + user_text}]
        self.turns.append({"role": "user", "content": content})
        self.turn_images.append(images)
        prompt, max_new = self._prompt()
        every_image = [image for held in self.turn_images for image in held]  # the images of the turns kept
        extra = {}
        if every_image:
            import torch

            extra["images"] = torch.stack(every_image).to(self.model.embed.weight.device)
        pieces: list[str] = []
        try:
            for piece in stream_text(self.model, self.tokenizer, prompt, max_new_tokens=max_new, **self.sampling,
                                     **extra):
                pieces.append(piece)
                yield piece
        finally:
            self.turns.append({"role": "assistant", "content": "".join(pieces)})
            self.turn_images.append([])
