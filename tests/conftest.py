"""Shared fixtures."""

import pytest


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A real corpus small enough for tests: ~5 MB of the Python standard library, bpe:2048 (builds in ~10 s)."""
    from foresight.data.prepare import prepare

    return prepare("stdlib", "bpe:2048", root=tmp_path_factory.mktemp("data"), max_bytes=5_000_000,
                   val_fraction=0.1, quiet=True)
