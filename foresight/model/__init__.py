"""The network: a Llama-style Transformer with muP, its KV cache, sampling and generation, the chat template."""

from foresight.model.config import ModelConfig
from foresight.model.transformer import KVCache, Transformer

__all__ = ["ModelConfig", "KVCache", "Transformer"]
