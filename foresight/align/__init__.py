"""Post-training alignment."""
