#!/usr/bin/env bash
# Install everything the project needs and run every check and test, on SQLite, PostgreSQL and
# MariaDB. This is the README's test command; .ci/run calls it. Extra arguments go to pytest.
#
#   --quick (first argument): leave out the tests marked slow (other processes, the benchmark's
#           smoke run), for the inner loop; CI runs everything.
#   TASKMANAGER_TEST_WORKERS: pytest worker processes (pytest-xdist), default 2; 0 runs pytest in
#           one process. Each worker creates its own throwaway databases; tests are dealt out
#           one at a time (--maxschedchunk 1), the slow ones first, so no long one comes last.
# docs/development.md says more.
set -euo pipefail
cd "$(dirname "$0")/.."

select=()
if [ "${1:-}" = "--quick" ]; then
  shift
  select=(-m "not slow")
fi

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
echo "== pytest";        .venv/bin/pytest -n "${TASKMANAGER_TEST_WORKERS:-2}" --maxschedchunk 1 "${select[@]}" "$@"
