"""Predictable scaling: ladders, law fits with uncertainty, the prediction ledger, forecasts."""
