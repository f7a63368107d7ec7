"""Serving: generation engine, API, chat."""
