#!/usr/bin/env bash
# Install jnet with its test and docs extras into .venv (created if missing), lint, type-check
# jnet/ (mypy, configured in pyproject.toml), build the documentation site strictly, and run the
# whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` or `-k optim`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,docs]"
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict -d site
exec .venv/bin/python -m pytest -n auto -p no:cacheprovider --durations=15 "$@"
