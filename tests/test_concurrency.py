"""Concurrent `mux` processes never lose an update, and exactly one of two same-name `new`s wins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import libtmux
import pytest
from conftest import git, mux_ls, window_tasks

pytestmark = pytest.mark.usefixtures("fake_profile")


def spawn_new(repo: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "muxagent", "new", name, "-a", "fake"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=90), p.communicate()[1]) for p in procs]


def test_six_distinct_news_at_once_are_all_recorded(repo: Path, server: libtmux.Server) -> None:
    names = [f"par-{i}" for i in range(6)]
    results = finish([spawn_new(repo, name) for name in names])
    assert [code for code, _ in results] == [0] * 6, results
    rows = mux_ls(repo)
    assert set(rows) == set(names)
    assert len({row["window"] for row in rows.values()}) == 6
    assert len({row["port"] for row in rows.values()}) == 6
    assert sorted(window_tasks(server)) == sorted(names)


def test_one_name_six_times_exactly_one_wins(repo: Path, server: libtmux.Server) -> None:
    results = finish([spawn_new(repo, "same") for _ in range(6)])
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1, 1, 1, 1, 1], results
    for code, err in results:
        if code:
            assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert list(mux_ls(repo)) == ["same"]
    assert git(repo, "worktree", "list").count("proj.worktrees") == 1
    assert window_tasks(server) == ["same"]
