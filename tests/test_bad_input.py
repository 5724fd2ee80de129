"""Bad input: one line on stderr, a non-zero exit, no traceback, and nothing created or changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import libtmux
import pytest
from conftest import git, make_repo, mux_ls, run_mux
from merge_helpers import refs

from muxagent.naming import session_for

pytestmark = pytest.mark.usefixtures("fake_profile")


def server_running(socket: str) -> bool:
    return bool(libtmux.Server(socket_name=socket).is_alive())


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str, code: int = 1) -> None:
    assert proc.returncode == code, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mux: ") and "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0]


def repo_state(repo: Path) -> tuple[str, str, list[str]]:
    return (
        refs(repo),
        git(repo, "worktree", "list", "--porcelain"),
        sorted(p.name for p in repo.parent.iterdir()),
    )


@pytest.mark.parametrize(
    "name", ["has space", "a/b", "..", "a..b", "-lead", "#(touch x)", "$(id)", "", "x" * 49, "x.lock"]
)
def test_bad_names_create_nothing(repo: Path, tmux_socket: str, name: str) -> None:
    before = repo_state(repo)
    proc = run_mux("new", "-a", "fake", "--", name, cwd=repo, check=False)
    assert_one_line_error(proc)
    assert repo_state(repo) == before
    assert not server_running(tmux_socket)
    assert not (repo / ".git" / "mux" / "tasks.json").exists()


def test_duplicate_name_is_refused(repo: Path) -> None:
    run_mux("new", "dup", "-a", "fake", cwd=repo)
    before = repo_state(repo)
    assert_one_line_error(run_mux("new", "dup", "-a", "fake", cwd=repo, check=False), "already exists")
    assert repo_state(repo) == before
    assert list(mux_ls(repo)) == ["dup"]


@pytest.mark.parametrize(
    "args",
    [
        ("attach", "nope"),
        ("send", "nope", "hi"),
        ("peek", "nope"),
        ("diff", "nope"),
        ("rm", "nope"),
        ("rm", "--force", "nope"),
    ],
)
def test_unknown_task(repo: Path, args: tuple[str, ...]) -> None:
    assert_one_line_error(run_mux(*args, cwd=repo, check=False), "no task named 'nope'")


@pytest.mark.parametrize("args", [("ls",), ("new", "x", "-a", "fake"), ("rm", "x")])
def test_not_a_git_repo(tmp_path: Path, args: tuple[str, ...]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_one_line_error(run_mux(*args, cwd=plain, check=False), "not a git repository")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_bare_repo_without_worktree(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    assert_one_line_error(run_mux("ls", cwd=bare, check=False))


def test_missing_agent_leaves_no_worktree(repo: Path) -> None:
    before = repo_state(repo)
    proc = run_mux("new", "x", "-a", "no-such-agent-binary --flag", cwd=repo, check=False)
    assert_one_line_error(proc, "not found on PATH")
    assert repo_state(repo) == before


def test_base_ref_that_does_not_exist(repo: Path) -> None:
    before = repo_state(repo)
    assert_one_line_error(run_mux("new", "x", "-a", "fake", "--base", "nope", cwd=repo, check=False), "nope")
    assert repo_state(repo) == before


def test_tmux_not_installed(repo: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh", "env"):
        found = shutil.which(tool)
        assert found is not None, f"{tool} is not on PATH"
        os.symlink(found, bin_dir / tool)
    before = repo_state(repo)
    env = {**os.environ, "PATH": str(bin_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "muxagent", "new", "x", "-a", "fake"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert_one_line_error(proc, "tmux")
    assert repo_state(repo) == before


def test_tmux_server_unreachable(repo: Path, tmp_path: Path) -> None:
    before = repo_state(repo)
    # tmux keeps its sockets in $TMUX_TMPDIR/tmux-UID/: a plain file there makes every server unreachable.
    tmux_tmpdir = tmp_path.parent / f"{tmp_path.name}-tmux"
    tmux_tmpdir.mkdir()
    (tmux_tmpdir / f"tmux-{os.getuid()}").write_text("")
    env = {**os.environ, "TMUX_TMPDIR": str(tmux_tmpdir)}
    proc = subprocess.run(
        [sys.executable, "-m", "muxagent", "new", "x", "-a", "fake"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert_one_line_error(proc, "tmux")
    assert repo_state(repo) == before


def test_prompt_and_prompt_file_together_is_a_usage_error(repo: Path, tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("x")
    proc = run_mux("new", "x", "-a", "fake", "-p", "a", "--prompt-file", str(f), cwd=repo, check=False)
    assert_one_line_error(proc, code=2)


def test_missing_prompt_file(repo: Path, tmp_path: Path) -> None:
    proc = run_mux("new", "x", "-a", "fake", "--prompt-file", str(tmp_path / "none.txt"), cwd=repo, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_detached_main_checkout_needs_a_base(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    assert_one_line_error(run_mux("new", "x", "-a", "fake", cwd=repo, check=False), "--base")


def test_same_folder_name_in_two_repos_gets_two_sessions(tmp_path: Path) -> None:
    one, two = make_repo(tmp_path / "a" / "proj"), make_repo(tmp_path / "b" / "proj")
    assert session_for(one) != session_for(two)
    run_mux("new", "x", "-a", "fake", cwd=one)
    run_mux("new", "x", "-a", "fake", cwd=two)
    assert mux_ls(one)["x"]["session"] != mux_ls(two)["x"]["session"]


# A command that fails the way only a bug in mux would: added to the real CLI, run through its real entry point.
BUGGY_COMMAND = """
import sys
from muxagent import cli

@cli.app.command("buggy")
def buggy() -> None:
    {}["no such key"]

sys.argv = ["mux", "buggy"]
cli.main()
"""


@pytest.mark.parametrize("where", ["repo", "outside"])
def test_a_bug_is_one_line_naming_the_log_that_holds_its_traceback(repo: Path, tmp_path: Path, where: str) -> None:
    cwd = repo if where == "repo" else tmp_path
    proc = subprocess.run([sys.executable, "-c", BUGGY_COMMAND], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "internal error: KeyError", "please report it")
    log = Path(os.environ["XDG_STATE_HOME"], "mux", "mux.log") if where == "outside" else repo / ".git/mux/mux.log"
    assert f"the traceback is in {log}" in proc.stderr
    assert "Traceback (most recent call last)" in log.read_text() and "'no such key'" in log.read_text()
