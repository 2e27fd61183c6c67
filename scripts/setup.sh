#!/usr/bin/env bash
# Sets up liquid-edge in ./.venv from the project's own files.
#   LIQUID_EDGE_TORCH: the torch requirement to install first (default: torch==2.13.0, the CPU wheel
#   on our CI machines; on a GPU machine use e.g. LIQUID_EDGE_TORCH=torch to get the CUDA build).
# As root on Debian/Ubuntu it also installs espeak-ng (the speech synthesiser of `liquid-edge data
# synth`), libsndfile1 and, where there is no C compiler, gcc (the native CPU kernel compiles on first
# use); elsewhere it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v cc >/dev/null 2>&1 && [ -z "${CC:-}" ]; then   # the native CPU kernel compiles on first use
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
  else
    echo "note: no C compiler found (needed by the native CPU backend): sudo apt-get install gcc" >&2
  fi
fi
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng libsndfile1 >/dev/null
  else
    echo "note: espeak-ng not found (needed by 'liquid-edge data synth'): sudo apt-get install espeak-ng" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77"
.venv/bin/python -m pip install -q "${LIQUID_EDGE_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e '.[dev]'
echo "liquid-edge installed in .venv ($(.venv/bin/liquid-edge --version))"
