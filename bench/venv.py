"""The bench environment, ``.bench-venv``: the other queues and matplotlib, from
``bench/requirements.txt``, kept apart from the project's own dependencies.

    python -m bench.venv      # create or update it (``python -m bench run`` does this itself)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venv"
BIN = VENV / "bin"
REQUIREMENTS = Path(__file__).parent / "requirements.txt"
STAMP = VENV / "requirements.sha256"


def ensure() -> Path:
    """Create ``.bench-venv`` if missing and install the requirements if they changed."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest and (BIN / "python").exists():
        return VENV
    if not (BIN / "python").exists():
        print(f"creating {VENV} ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        (VENV / ".gitignore").write_text("*\n")
    print(f"installing {REQUIREMENTS.relative_to(ROOT)} into {VENV.name} ...", file=sys.stderr, flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(digest + "\n")
    return VENV


def versions() -> dict[str, str]:
    """Installed versions of the bench environment's packages that matter for the results."""
    wanted = ("celery", "kombu", "redis", "rq", "dramatiq", "procrastinate", "psycopg", "matplotlib")
    out = subprocess.run(
        [str(BIN / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out) if p["name"].lower() in wanted}


if __name__ == "__main__":
    ensure()
