#!/usr/bin/env bash
# The README's main job on a fresh machine: set up .venv, prepare the default corpus, then run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# forecast-cpu trains on the default corpus with a 1024-token BPE (cached: a second run does nothing).
.venv/bin/foresight data prepare --tokenizer bpe:1024
exec .venv/bin/foresight forecast configs/forecast-cpu.toml --out forecasts/cpu "$@"
