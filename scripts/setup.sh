#!/usr/bin/env bash
# Sets up liquid-edge in ./.venv from the project's own files.
#   LIQUID_EDGE_TORCH: the torch requirement to install first (default: torch==2.13.0, the CPU wheel
#   on our CI machines; on a GPU machine use e.g. LIQUID_EDGE_TORCH=torch to get the CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77"
.venv/bin/python -m pip install -q "${LIQUID_EDGE_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e '.[dev]'
echo "liquid-edge installed in .venv ($(.venv/bin/liquid-edge --version))"
