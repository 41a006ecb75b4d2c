#!/usr/bin/env bash
# Install jnet with its docs extra into .venv (created if missing) and build the documentation
# site into site/ with `mkdocs build --strict`: a broken link or anchor, a page missing from the
# nav, or a docstring the parser cannot read fails the build. Preview: .venv/bin/mkdocs serve
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[docs]"
NO_MKDOCS_2_WARNING=1 exec .venv/bin/python -m mkdocs build --strict -d site "$@"
