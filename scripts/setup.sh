#!/usr/bin/env bash
# Create .venv and install llmpulse with its test tools. Safe to run again.
# torch is pinned first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "llmpulse installed in .venv ($(.venv/bin/python -c 'import llmpulse; print(llmpulse.__version__)'))"
