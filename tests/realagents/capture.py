"""Recapture tests/fixtures/screens/ from the real agents: `python tests/realagents/capture.py [pytest args]`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    env = {**os.environ, "MUX_UPDATE_SCREENS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "realagents.plugin", "-q", "test_real_agents_harness.py", *argv]
    status = subprocess.run(cmd, cwd=TESTS, env=env).returncode
    subprocess.run(["git", "status", "--short", "--", "fixtures/screens"], cwd=TESTS)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
