"""A repository's content (an untrusted `.mux.toml`), an agent's screen or a hook must never run code or attack
the terminal. The promises this module holds, each against a real repo, tmux server and `mux` process:

| promise | tests |
| --- | --- |
| no screen pattern stalls a command (RE2, linear time) | test_a_catastrophic_pattern_*, test_a_pattern_re2_cannot_* |
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git, mux_ls, new_task, run_mux, wait_until

pytestmark = pytest.mark.usefixtures("fake_profile")

# Exponential for a backtracking engine: 178 ms on a 20-character line with Python's re, doubling with each more.
HOSTILE = r"(?:.|[^\n])*ZZZ"
DEADLINE = 20.0


def write_repo_config(repo: Path, text: str) -> None:
    """An untrusted .mux.toml, as a clone brings it (committed, never `mux trust`ed)."""
    (repo / ".mux.toml").write_text(text)


def screen(repo: Path, name: str) -> str:
    return run_mux("peek", name, cwd=repo).stdout


# ---------------------------------------------------------------------------------------------- 13: regexes


def test_a_catastrophic_pattern_in_an_untrusted_repo_config_stalls_no_command(repo: Path) -> None:
    write_repo_config(repo, f"[agents.fake.status]\nwaiting = ['{HOSTILE}']\n")
    new_task(repo, "t", "-a", "fake")
    run_mux("send", "t", "a" * 70, cwd=repo)  # a screen line long enough to hang a backtracking engine
    wait_until(lambda: "got: " + "a" * 70 in screen(repo, "t"))
    for args in (["ls"], ["ls", "--json"], ["status-line", "--tmux-styles"], ["wait", "t", "--for", "any"]):
        try:
            proc = run_mux(*args, cwd=repo, timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`mux {' '.join(args)}` still ran after {DEADLINE} s")
        assert proc.returncode == 0, proc.stderr
    assert mux_ls(repo)["t"]["state"] == "idle"
    # The monitor is not stuck in the pattern either: it still delivers a queued prompt.
    run_mux("send", "t", "--when-idle", "after the hostile pattern", cwd=repo)
    wait_until(lambda: "got: after the hostile pattern" in screen(repo, "t"), timeout=DEADLINE)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"(a)\1", "backreferences"), ("(?=x)y", "lookaround"), ("(?<!x)y", "lookaround")],
)
def test_a_pattern_re2_cannot_run_in_linear_time_is_refused_in_one_line_naming_it(
    repo: Path, pattern: str, why: str
) -> None:
    write_repo_config(repo, f"[agents.fake.status]\nworking = ['{pattern}']\n")
    proc = run_mux("new", "t", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "agents.fake.status.working[0]" in proc.stderr and why in proc.stderr
    assert str(repo / ".mux.toml") in proc.stderr and "Traceback" not in proc.stderr
    assert "mux/t" not in git(repo, "branch", "--list"), "refused before anything was created"
