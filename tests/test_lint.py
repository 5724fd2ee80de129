"""The strict gates (ruff, mypy --strict) are part of the test suite, so the one test command runs them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_checks_every_directory_of_python() -> None:
    """`python -m mypy` checks what [tool.mypy] files names: a directory left out would pass unchecked."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, check=True, capture_output=True, text=True)
    tops = {Path(path).parts[0] for path in tracked.stdout.splitlines()}
    checked = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"])
    assert tops <= checked, f"not type-checked: {sorted(tops - checked)}"
    assert {"muxagent", "tests", "bench"} <= tops  # git listed the files (an empty list would pass the above)
