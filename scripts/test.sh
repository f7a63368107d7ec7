#!/usr/bin/env bash
# Set up (if needed) and run the default test suite. Extra arguments go to pytest, e.g. `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# tests/test_chat_page.py drives Debian's Chromium (Playwright never downloads a browser here) in a network namespace
# brought up with `ip`. As root, install what is missing, quietly; if that fails, that test skips and says why.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt) for tests/test_chat_page.py"
  log=$(mktemp)
  if ! (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq "${missing[@]}") >"$log" 2>&1
  then
    tail -n 5 "$log" >&2
    echo "warning: could not install ${missing[*]}; tests/test_chat_page.py will skip" >&2
  fi
  rm -f "$log"
fi
exec .venv/bin/python -m pytest "$@"
