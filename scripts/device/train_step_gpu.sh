#!/usr/bin/env bash
# Issue 22's MFU measurement, in one call of the device tool (10 minutes a command):
#   run(command="bash scripts/device/train_step_gpu.sh", carry=[".device"], timeout_s=600)
# bench/train_step.py --device cuda --dtype bfloat16 for a ~124M model (GPT-2 small's shape: width 768, 12 layers)
# and a ~350M one (width 1024, 24 layers), each eager and with --compile, ours against transformers'
# LlamaForCausalLM of the same shape in the same process; each bench gets BENCH_S seconds (default 120; four of
# them fit the command with room for start-up). Logs to $OUT/train_step-<shape>-<mode>.log; the last line of each
# is `ratio: X` and the lines above give each model's MFU against the card's dense bf16 peak. Goal: MFU >= 40%,
# ratio >= 1.0. For a dry run on a CPU: OUT=/tmp/out PYTHON=.venv/bin/python DEVICE=cpu bash scripts/device/train_step_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import tomli_w" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/wheels/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
if [ "$DEVICE" = cuda ]; then SIZE="--vocab 32768 --seq 1024 --batch 16 --steps 5 --repeats 5"; DTYPE=bfloat16
else SIZE="--vocab 512 --seq 32 --batch 2 --steps 1 --repeats 2 --threads 2"; DTYPE=float32; fi
for shape in "124m:--width 768 --layers 12 --heads 12" "350m:--width 1024 --layers 24 --heads 16"; do
  name=${shape%%:*}; dims=${shape#*:}
  [ "$DEVICE" = cpu ] && dims="--width 64 --layers 2 --heads 2"
  for mode in eager compile; do
    flag=""; [ "$mode" = compile ] && flag="--compile"
    timeout --kill-after=10 "${BENCH_S:-120}" $PY bench/train_step.py --device "$DEVICE" --dtype "$DTYPE" $dims $SIZE \
      $flag > "$OUT/train_step-$name-$mode.log" 2>&1 || echo "exit status $?" >> "$OUT/train_step-$name-$mode.log"
    echo "$name $mode: $(grep -E 'MFU|ratio' "$OUT/train_step-$name-$mode.log" | tr '\n' ' ')"
  done
done
