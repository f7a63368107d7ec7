#!/usr/bin/env bash
# The README's main job on a fresh machine: set up .venv, prepare the default corpus, then run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/foresight data prepare
if [ -f configs/forecast-cpu.toml ] && .venv/bin/foresight --help | grep -q " forecast "; then
  exec .venv/bin/foresight forecast configs/forecast-cpu.toml --out forecasts/cpu "$@"
else
  exec .venv/bin/foresight train configs/tiny.toml --out runs/tiny --resume "$@"
fi
