"""Corpora, tokenizers and token shards."""
