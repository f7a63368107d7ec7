"""Shared fixtures."""

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A real corpus small enough for tests: ~5 MB of the Python standard library, bpe:2048 (builds in ~10 s)."""
    from foresight.data.prepare import prepare

    return prepare("stdlib", "bpe:2048", root=tmp_path_factory.mktemp("data"), max_bytes=5_000_000,
                   val_fraction=0.1, quiet=True)


# Texts for the tiny tokenizer of `tiny`.
TINY_TEXTS = ["The capital of France is Paris.", "def add(a, b):\n    return a + b\n", "A quick brown fox jumps over",
              "the lazy dog. 1234567890 !?", "Émile a mangé une crêpe."] * 20


@pytest.fixture(scope="module")
def tiny():
    """A random model whose logits are far apart (large init), so that float rounding cannot flip an argmax and
    cached and uncached decoding must agree exactly; and a small byte-level BPE tokenizer for the text tests."""
    import torch

    from foresight.data.tokenizer import Tokenizer
    from foresight.model import ModelConfig, Transformer
    from foresight.weights.load import RunTokenizer

    tokenizer = RunTokenizer(Tokenizer.from_spec("bpe:300", TINY_TEXTS))
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                      max_seq_len=96, parametrization="sp", init_std=0.3)
    torch.manual_seed(0)
    return Transformer(cfg).eval(), tokenizer


class _Scripts:
    """scripts/NAME.py (the scripts are not part of the package): `script("hard_prompts")` loads one as a module,
    `script.run("hard_prompts", *args)` runs it in a process from the repository root."""

    root = Path(__file__).resolve().parents[1]

    def __call__(self, name: str):
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, self.root / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def run(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(self.root / "scripts" / f"{name}.py"), *args], cwd=self.root,
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def script() -> _Scripts:
    return _Scripts()
