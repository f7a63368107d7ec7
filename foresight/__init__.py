"""Foresight: train, forecast, evaluate, align and serve language models."""

__version__ = "0.1.0"
