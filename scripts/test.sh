#!/usr/bin/env bash
# Install everything the project needs and run every check and test, on SQLite, PostgreSQL and
# MariaDB. This is the README's test command; .ci/run calls it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

echo "== ruff";          .venv/bin/ruff check src tests bench examples
echo "== ruff format";   .venv/bin/ruff format --check src tests bench examples
echo "== mypy";          .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest";        .venv/bin/pytest "$@"
