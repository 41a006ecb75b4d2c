#!/usr/bin/env bash
# Install jnet with its demo extra into .venv (created if missing) and train a CNN on
# scikit-learn's digits. Extra arguments go to scripts/train.py, e.g. `--model mlp --epochs 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[demo]"
exec .venv/bin/python scripts/train.py "$@"
