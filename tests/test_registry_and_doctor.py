"""The registry survives corruption and loss; `mux doctor` reports the environment and orphans; attach."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, mux_ls, run_mux, wait_until

from muxagent.state import monitor_state

pytestmark = pytest.mark.usefixtures("fake_profile")


def state_dir(repo: Path) -> Path:
    return repo / ".git" / "mux"


def test_corrupt_registry_is_rebuilt_from_the_journal_not_emptied(repo: Path) -> None:
    run_mux("new", "a", "-a", "fake", "-p", "hello", cwd=repo)
    run_mux("new", "b", "-a", "fake", cwd=repo)
    (state_dir(repo) / "tasks.json").write_text("{ this is not json")
    proc = run_mux("ls", "--json", cwd=repo)
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["prompt"] == "hello" and rows["a"]["agent"] == "fake"
    # Whoever reads the registry first repairs it: this `ls`, or the monitor mux runs beside the tasks.
    journal = (state_dir(repo) / "journal.jsonl").read_text()
    assert "rebuilt" in proc.stderr or '"action":"rebuild"' in journal
    assert list(state_dir(repo).glob("tasks.json.corrupt-*"))


def test_lost_state_dir_is_rebuilt_from_worktrees_and_windows(repo: Path) -> None:
    run_mux("new", "kept", "-a", "fake", cwd=repo)
    window = mux_ls(repo)["kept"]["window"]

    def deleted() -> bool:
        shutil.rmtree(state_dir(repo), ignore_errors=True)
        return not state_dir(repo).exists()

    # The monitor may write into the folder as it goes (rm then finds it not empty): delete until it is gone.
    wait_until(deleted)
    proc = run_mux("ls", "--json", cwd=repo)
    row = json.loads(proc.stdout)[0]
    assert (row["name"], row["window"], row["branch"]) == ("kept", window, "mux/kept")
    journal = (state_dir(repo) / "journal.jsonl").read_text()
    assert "adopted" in proc.stderr or '"action":"adopt"' in journal
    wait_until(lambda: mux_ls(repo)["kept"]["state"] == "idle")


def test_doctor_reports_versions_and_orphans(repo: Path, tmux_socket: str) -> None:
    run_mux("new", "ok", "-a", "fake", cwd=repo)
    healthy = run_mux("doctor", cwd=repo).stdout
    assert "ok    tmux: 3." in healthy and "ok    git: 2." in healthy
    assert "orphans: none" in healthy
    # A worktree on a mux branch without a record, a record without a worktree, a window without a task.
    git(repo, "worktree", "add", "-q", "-b", "mux/stray", str(repo.parent / "stray"))
    run_mux("new", "ghost", "-a", "fake", cwd=repo)
    subprocess.run(["rm", "-rf", str(repo.parent / "proj.worktrees" / "ghost")], check=True)
    session = mux_ls(repo)["ok"]["session"]
    window = subprocess.run(
        [
            "tmux",
            "-L",
            tmux_socket,
            "new-window",
            "-d",
            "-P",
            "-F",
            "#{window_id}",
            "-t",
            f"={session}:",
            "sleep",
            "600",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["tmux", "-L", tmux_socket, "set-option", "-w", "-t", window, "@mux_task", "zombie"], check=True)
    report = run_mux("doctor", cwd=repo).stdout
    assert "stray has no task record" in report
    assert "task 'ghost' has no worktree" in report
    assert f"window {window} belongs to no task ('zombie')" in report


def test_doctor_outside_a_repo_says_so(tmp_path: Path) -> None:
    proc = run_mux("doctor", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "not a git repository" in proc.stdout


def test_attach_outside_tmux_attaches_a_client_to_the_task_window(repo: Path, tmux_socket: str) -> None:
    run_mux("new", "first", "-a", "fake", cwd=repo)
    run_mux("new", "second", "-a", "fake", cwd=repo)
    window = mux_ls(repo)["first"]["window"]
    pid, fd = pty.fork()
    if pid == 0:  # the child is the user's terminal running `mux attach`
        os.chdir(repo)
        os.execv(sys.executable, [sys.executable, "-m", "muxagent", "attach", "first"])

    def client_window() -> str:
        return subprocess.run(
            ["tmux", "-L", tmux_socket, "list-clients", "-F", "#{window_id}"], capture_output=True, text=True
        ).stdout.strip()

    try:
        wait_until(lambda: client_window() == window)
    finally:
        subprocess.run(["tmux", "-L", tmux_socket, "detach-client", "-a"], capture_output=True)
        subprocess.run(["tmux", "-L", tmux_socket, "detach-client"], capture_output=True)
        os.close(fd)
        os.waitpid(pid, 0)


def test_doctor_after_the_tmux_server_died_names_the_dead_monitor_and_the_missing_tasks(
    repo: Path, tmux_socket: str
) -> None:
    run_mux("new", "lost", "-a", "fake", cwd=repo)
    monitor = wait_until(lambda: monitor_state.read(state_dir(repo)))
    assert "ok    monitor: running" in run_mux("doctor", cwd=repo).stdout
    # The monitor lives in a window of the server: it dies with it, and its file stays behind.
    subprocess.run(["tmux", "-L", tmux_socket, "kill-server"], check=True)
    wait_until(lambda: not Path(f"/proc/{monitor.pid}").exists())
    assert monitor_state.read(state_dir(repo)) is not None
    report = run_mux("doctor", cwd=repo).stdout
    assert f"warn  monitor: not running (pid {monitor.pid} of its last record is gone)" in report
    assert "warn  task windows: 1 task(s) without their window ('lost'): start their agents again with" in report
    assert "`mux restart --all`" in report


def test_doctor_does_not_take_a_process_given_the_monitors_pid_again_for_the_monitor(repo: Path) -> None:
    run_mux("new", "kept", "-a", "fake", cwd=repo)
    wait_until(lambda: monitor_state.read(state_dir(repo)))
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        # A live process that is not the monitor, named by the monitor's file while the real monitor holds the lock.
        monitor_state.write(state_dir(repo), monitor_state.MonitorState(pid=stranger.pid))
        report = run_mux("doctor", cwd=repo).stdout
        assert f"warn  monitor: not running (pid {stranger.pid} of its last record is gone)" in report
        assert "ok    task windows: every task has its window" in report
    finally:
        stranger.kill()
        stranger.wait()
