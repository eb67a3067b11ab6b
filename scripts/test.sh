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
# Before 0.2.0 the distribution was called taskmanager: uninstall such an install first, or it and
# taskmanager-queue would both own the taskmanager command (and removing one would remove it).
.venv/bin/python -m pip uninstall --quiet --yes taskmanager 2>/dev/null || true
.venv/bin/python -m pip install --quiet -e '.[dev]'

echo "== ruff";          .venv/bin/ruff check src tests bench examples
echo "== ruff format";   .venv/bin/ruff format --check src tests bench examples
echo "== mypy";          .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest";        .venv/bin/pytest "$@"
