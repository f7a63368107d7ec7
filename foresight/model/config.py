"""The model's shape and parametrization: everything needed to rebuild the same network."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal


@dataclass
class ModelConfig:
    """A Llama-family decoder. Widths and depths come from here; nothing about training does."""

    # 0 = size it from the tokenizer (the trainer fills it in before building the model).
    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    # Grouped-query attention: key/value heads shared by n_heads // n_kv_heads query heads. 0 means n_heads.
    n_kv_heads: int = 0
    # SwiGLU hidden width. 0 means 8/3 * d_model rounded up to a multiple of 32 (Llama's rule).
    d_ff: int = 0
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    # "mup": maximal update parametrization relative to mup_base_width (hyperparameters transfer across width);
    # "sp": standard parametrization (what Hugging Face checkpoints use).
    parametrization: Literal["mup", "sp"] = "mup"
    mup_base_width: int = 256
    # Under muP the attention logits are scaled by sqrt(mup_base_head_dim) / head_dim (1/d rather than 1/sqrt(d),
    # normalised so that a model with head_dim == mup_base_head_dim matches standard attention exactly).
    mup_base_head_dim: int = 64
    init_std: float = 0.02
    # Multiplier on the logits (under muP it is further divided by the width multiplier).
    output_mult: float = 1.0
    # Multiplier on the token embeddings as they enter the residual stream (muP's input multiplier; 1 = none).
    # Why it matters for small models: with embeddings at init_std the token identity is a whisper next to the
    # blocks' output, and a run can sit on the unigram plateau (~6 nats) for a seed-dependent number of steps.
    # At 10 every ladder run leaves it at once (docs/LOG.md, 2026-11-24). Width-independent, so muP keeps it fixed.
    embed_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.n_kv_heads == 0:
            self.n_kv_heads = self.n_heads
        if self.d_ff == 0:
            self.d_ff = 32 * math.ceil(8 * self.d_model / 3 / 32)
        problems = []
        if self.d_model % self.n_heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if (self.d_model // self.n_heads) % 2:
            problems.append("head_dim (d_model / n_heads) must be even for rotary embeddings")
        if self.parametrization not in ("mup", "sp"):
            problems.append(f"parametrization must be 'mup' or 'sp', not {self.parametrization!r}")
        if self.parametrization == "mup" and self.tie_embeddings:
            problems.append("muP needs separate input and output embeddings: set tie_embeddings = false")
        if not self.embed_mult > 0:
            problems.append(f"embed_mult must be positive, not {self.embed_mult}")
        if self.vocab_size < 0:
            problems.append("vocab_size must be positive (or 0 to take the tokenizer's)")
        for name in ("d_model", "n_layers", "n_heads", "max_seq_len", "mup_base_width"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def width_mult(self) -> float:
        """How much wider than the muP base this model is (1.0 under standard parametrization)."""
        return self.d_model / self.mup_base_width if self.parametrization == "mup" else 1.0

    @property
    def attn_scale(self) -> float:
        if self.parametrization == "mup":
            return math.sqrt(self.mup_base_head_dim) / self.head_dim
        return 1.0 / math.sqrt(self.head_dim)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
