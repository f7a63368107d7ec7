"""Model definition: Llama-style Transformer, muP, generation, import/export."""

from foresight.model.config import ModelConfig
from foresight.model.transformer import KVCache, Transformer

__all__ = ["ModelConfig", "KVCache", "Transformer"]
