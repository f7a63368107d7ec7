#!/usr/bin/env bash
# The GPU forecast (configs/forecast-gpu.toml) in one call of the device tool, which allows 10 minutes a command and
# sends back at most 8 files from $OUT. Run scripts/device/pack.sh here first, then, with the device tool:
#   run(command="bash scripts/device/forecast_gpu.sh", carry=[".device"], timeout_s=600)
# It unpacks the corpus, runs `foresight forecast` under a time budget (FORECAST_BUDGET_S, default 420 s, so that
# the packing and the benchmark below still fit in the command's 600 s), and writes to $OUT: forecast.log,
# forecast.json, loss_vs_compute.png, report.html, nvidia-smi.txt, bench.log (below), and forecast-state.tar.gz
# (the forecast folder without checkpoints: move it to .device/ to resume in a later call if the budget ran out;
# the ladder's finished runs and a registered prediction carry over, a cut target run starts again).
# Extra arguments go to `foresight forecast` (e.g. --set target.train.compile=true). For a dry run on a CPU:
#   OUT=/tmp/out PYTHON=.venv/bin/python bash scripts/device/forecast_gpu.sh --set target.train.device='"cpu"' ...
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
PY="${PYTHON:-python3}"
CONFIG="${FORECAST_CONFIG:-configs/forecast-gpu.toml}"
DIR=forecasts/gpu
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! $PY -c "import tomli_w" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/wheels/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ ! -f data/default-bpe1024/manifest.json ]; then
  [ -f .device/corpus-default-bpe1024.tar.xz ] || { echo "error: no corpus; run scripts/device/pack.sh and carry .device" >&2; exit 1; }
  mkdir -p data && xz -dc .device/corpus-default-bpe1024.tar.xz | tar -C data -xf - || exit 1
fi
if [ -f .device/forecast-state.tar.gz ] && [ ! -d "$DIR" ]; then
  mkdir -p forecasts && tar -C forecasts -xzf .device/forecast-state.tar.gz || exit 1  # packed as gpu/
fi
(nvidia-smi; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())") > "$OUT/nvidia-smi.txt" 2>&1

start=$(date +%s)
timeout --signal=INT --kill-after=20 "${FORECAST_BUDGET_S:-420}" \
  $PY -m foresight forecast "$CONFIG" --out "$DIR" --jobs "${FORECAST_JOBS:-2}" "$@" 2>&1 | tee "$OUT/forecast.log"
status=${PIPESTATUS[0]}
echo "forecast exit status $status after $(( $(date +%s) - start )) s" | tee -a "$OUT/forecast.log"

for f in forecast.json loss_vs_compute.png report.html; do [ -f "$DIR/$f" ] && cp "$DIR/$f" "$OUT/"; done
[ -d "$DIR" ] && tar -C forecasts --exclude=checkpoints --exclude=tensorboard -czf "$OUT/forecast-state.tar.gz" gpu

# Then, if the time allows (BENCH_S, default 90 s; 0 skips it), training throughput and MFU at a GPU-sized shape
# against transformers' LlamaForCausalLM in the same process (bench/train_step.py), to $OUT/bench.log.
if [ "${BENCH_S:-90}" -gt 0 ]; then
  timeout --kill-after=10 "${BENCH_S:-90}" $PY bench/train_step.py --device cuda --dtype bfloat16 --width 1024 \
    --layers 16 --heads 16 --vocab 32768 --seq 1024 --batch 16 --steps 5 --repeats 5 > "$OUT/bench.log" 2>&1 \
    || echo "bench exit status $?" >> "$OUT/bench.log"
fi
exit "$status"
