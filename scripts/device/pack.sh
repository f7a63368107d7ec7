#!/usr/bin/env bash
# Pack what the GPU forecast needs on a lent device machine into .device/ (git-ignored), for `carry`.
#
# That machine has PyTorch, SciPy, matplotlib, tokenizers, tqdm and TensorBoard, but no network: it cannot fetch
# the corpus's sources, and of Foresight's imports on the forecast path it lacks only tomli-w. So this packs
#   .device/corpus-default-bpe1024.tar.xz  the prepared default corpus (93 MB of shards -> ~23 MB), unpacked there
#                                          into data/ so the device trains on exactly the tokens the CPU runs saw
#   .device/wheels/tomli_w-*.whl            pure Python, installed there into /tmp/site
# and, with --state DIR, a finished or partial forecast folder to resume there (checkpoints left out).
# Then, with the device tool: run(command="bash scripts/device/forecast_gpu.sh", carry=[".device"], timeout_s=600).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
[ -d data/default-bpe1024 ] || { echo "error: data/default-bpe1024 is missing; run: foresight data prepare --tokenizer bpe:1024" >&2; exit 1; }
mkdir -p .device/wheels
if [ ! -f .device/corpus-default-bpe1024.tar.xz ] || [ data/default-bpe1024/manifest.json -nt .device/corpus-default-bpe1024.tar.xz ]; then
  echo "packing data/default-bpe1024 ..."
  tar -C data -cf - default-bpe1024 | xz -T2 -6 > .device/corpus-default-bpe1024.tar.xz.tmp
  mv .device/corpus-default-bpe1024.tar.xz.tmp .device/corpus-default-bpe1024.tar.xz
fi
ls .device/wheels/tomli_w-*.whl >/dev/null 2>&1 \
  || $PY -m pip download --disable-pip-version-check -q --no-deps -d .device/wheels "tomli-w==$($PY -c 'import importlib.metadata as m; print(m.version("tomli-w"))')"
if [ "${1:-}" = "--state" ]; then
  [ -n "${2:-}" ] && [ -f "$2/plan.json" ] || { echo "error: --state needs a forecast folder (one with plan.json); got '${2:-}'" >&2; exit 1; }
  tar -C "$(dirname "$2")" --exclude=checkpoints --exclude=tensorboard --transform "s,^$(basename "$2"),gpu," \
    -czf .device/forecast-state.tar.gz "$(basename "$2")"
  echo "packed $2 (to resume as forecasts/gpu there)"
fi
du -sh .device; echo "ready: carry=[\".device\"], command \"bash scripts/device/forecast_gpu.sh\""
