#!/usr/bin/env bash
# Install jnet with its test extra into .venv (created if missing), lint, and run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` or `-k optim`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -n auto -p no:cacheprovider "$@"
