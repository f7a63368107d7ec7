"""A vision-language model: an image encoder and a projector feeding a language model (LLaVA's shape).

The prompt holds `tokens_per_image` copies of an image placeholder token for each image, in the order the images
are given; the projector's output vectors replace those tokens' embeddings (`Transformer.hidden_states`' `embeds`),
and the language model reads them like any other input. The language model knows nothing of images: it is the same
`Transformer`, saved and loaded as before; this module adds the encoder, the projector and the placeholder's id.

The placeholder is an id the tokenizer never produces from ordinary text: for SmolLM2 an unused special token
(`<empty_output>`; its own embedding is never read, it is always replaced), for a model trained here the id one past
the tokenizer's vocabulary. Prompts are built with `encode_with_images`, which tokenizes the text around each image
marker and puts the placeholder ids in between, so no tokenizer needs to know the placeholder.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from foresight.errors import ForesightError
from foresight.model.transformer import Transformer
from foresight.model.vision import Projector, VisionConfig, build_encoder

IMAGE_MARKER = "<image>"  # where an image goes in rendered prompt text, before `encode_with_images` expands it


class VisionLanguageModel(nn.Module):
    def __init__(self, lm: Transformer, vision: VisionConfig, image_token_id: int, pretrained_encoder: bool = True):
        super().__init__()
        if not 0 <= image_token_id < lm.cfg.vocab_size:
            raise ValueError(f"image_token_id {image_token_id} is outside the vocabulary (0..{lm.cfg.vocab_size - 1})")
        self.lm, self.vision, self.image_token_id = lm, vision, image_token_id
        self.encoder = build_encoder(vision, pretrained=pretrained_encoder)
        self.projector = Projector(vision.feature_dim, lm.cfg.d_model)
        self.frozen_encoder = vision.frozen or vision.encoder == "efficientnet-lite0"
        if self.frozen_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def cfg(self):
        return self.lm.cfg

    @property
    def embed(self) -> nn.Embedding:
        return self.lm.embed

    @property
    def tokens_per_image(self) -> int:
        return self.vision.tokens_per_image

    def train(self, mode: bool = True) -> "VisionLanguageModel":
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()  # a frozen CNN keeps its batch-norm statistics
        return self

    def param_groups(self, weight_decay: float) -> list[dict]:
        """The language model's groups (muP learning-rate multipliers) plus the projector's: its first layer maps a
        fixed feature width into the model's width (vector-like under muP: the base rate, like an embedding), its
        second is width x width (matrix-like: lr / width_mult). A trainable encoder learns at the base rate.
        Parameters that do not train (a frozen encoder, or the language model in stage 1) are left out."""
        m = self.lm.cfg.width_mult
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad])
                  for g in self.lm.param_groups(weight_decay)]
        groups += [
            {"name": "projector_in", "params": list(self.projector.norm.parameters()) +
             list(self.projector.fc1.parameters()), "lr_mult": 1.0, "weight_decay": 0.0},
            {"name": "projector_hidden", "params": list(self.projector.fc2.parameters()), "lr_mult": 1.0 / m,
             "weight_decay": weight_decay},
        ]
        if not self.frozen_encoder:
            groups.append({"name": "encoder", "params": list(self.encoder.parameters()), "lr_mult": 1.0,
                           "weight_decay": weight_decay})
        return [g for g in groups if any(p.requires_grad for p in g["params"])]

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        """images [n, 3, S, S] in [0, 1] -> input vectors [n, tokens_per_image, d_model]."""
        size = self.vision.image_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"images must be [n, 3, {size}, {size}], got {list(images.shape)}")
        if self.frozen_encoder:
            with torch.no_grad():
                features = self.encoder(images)
        else:
            features = self.encoder(images)
        return self.projector(features.to(self.projector.fc1.weight.dtype))

    def hidden_states(self, tokens: torch.Tensor, images: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """As `Transformer.hidden_states`, with `images` [n, 3, S, S] placed at the placeholder tokens in order
        (row by row). With images=None the prompt must hold no placeholder (a text-only call, or a decoding step
        after the image was read into the KV cache)."""
        mask = tokens == self.image_token_id
        self.check_placeholders(int(mask.sum()), 0 if images is None else images.shape[0])
        if images is None:
            return self.lm.hidden_states(tokens, **kw)
        embeds = self.image_embeds(images).flatten(0, 1)
        return self.lm.hidden_states(tokens, embeds=embeds, embeds_mask=mask, **kw)

    def check_placeholders(self, placed: int, n_images: int) -> None:
        """Refuse a prompt whose placeholder count is not n_images runs of tokens_per_image."""
        expected = n_images * self.tokens_per_image
        if placed != expected:
            raise ForesightError(f"the prompt has {placed} image placeholder tokens; {expected} are needed for "
                                 f"{n_images} image(s) of {self.tokens_per_image} tokens each")

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm.logits(hidden)

    def forward(self, tokens: torch.Tensor, images: torch.Tensor | None = None, last_only: bool = False,
                **kw) -> torch.Tensor:
        hidden = self.hidden_states(tokens, images, **kw)
        return self.logits(hidden[:, -1:] if last_only else hidden)


def encode_with_images(tokenizer, text: str, image_token_id: int, tokens_per_image: int) -> tuple[list[int], int]:
    """Token ids for prompt text in which IMAGE_MARKER stands for each image: the text between markers tokenized
    as usual, tokens_per_image placeholder ids in place of each marker. Returns (ids, number of images)."""
    pieces = text.split(IMAGE_MARKER)
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if i:
            ids += [image_token_id] * tokens_per_image
        if piece:
            ids += tokenizer.encode(piece)
    return ids, len(pieces) - 1


def flatten_content(messages: list[dict]) -> list[dict]:
    """Messages whose content may be a list of parts ({"type": "text", "text": ...} or {"type": "image", ...}, the
    OpenAI shape) -> messages with string content, each image part replaced by IMAGE_MARKER, parts in order with
    no separator added, so a chat template that expects strings renders them."""
    out = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, list):
            pieces = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    pieces.append(part.get("text", ""))
                elif kind in ("image", "image_url"):
                    pieces.append(IMAGE_MARKER)
                else:
                    raise ForesightError(f"messages[{i}].content[{j}]: a part must have type 'text' or 'image', "
                                         f"not {kind!r}")
            m = {**m, "content": "".join(pieces)}
        out.append(m)
    return out


class ImagePromptTokenizer:
    """A model's tokenizer, with IMAGE_MARKER in text (or image parts in chat messages) expanded to
    tokens_per_image placeholder ids. Everything else is the wrapped tokenizer's, so the chat template, stop
    tokens and decoding are the language model's own."""

    def __init__(self, tokenizer, image_token_id: int, tokens_per_image: int):
        self.inner, self.image_token_id, self.tokens_per_image = tokenizer, image_token_id, tokens_per_image

    def __getattr__(self, name):  # vocab_size, eos_ids, bos_ids, chat_template, decode, save_pretrained ...
        return getattr(self.inner, name)

    def encode(self, text: str) -> list[int]:
        return encode_with_images(self.inner, text, self.image_token_id, self.tokens_per_image)[0]

    def chat_text(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self.inner.chat_text(flatten_content(messages), add_generation_prompt)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(self.chat_text(messages, add_generation_prompt))
