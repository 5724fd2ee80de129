"""Claude Code's own status file (`~/.claude/sessions/<pid>.json`) as a signal beside its hooks: read for the task's
own agent only, and ignored when it is stale, foreign or garbage (muxagent/status/claude_status_file.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mux_ls, new_task, profile_with, run_mux, wait_until

from muxagent.model import State
from muxagent.status import claude_status_file

# A process that keeps a status file as Claude Code 2.1.330 does, then waits to be killed.
KEEPER = """
import json, os, sys, time
with open(f"/proc/{os.getpid()}/stat", encoding="ascii") as f:
    start = f.read().rsplit(")", 1)[1].split()[19]
folder = os.path.join(os.environ["HOME"], ".claude", "sessions")
os.makedirs(folder, exist_ok=True)
record = {"pid": os.getpid(), "procStart": start, "status": sys.argv[1], "statusUpdatedAt": 1796000000000,
          "waitingFor": "permission prompt"}
with open(os.path.join(folder, f"{os.getpid()}.json"), "w", encoding="utf-8") as f:
    json.dump(record, f)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[str]]]]:
    """Start status-file keepers (HOME is the test's own); every one is killed at the end."""
    script = tmp_path / "keeper.py"
    script.write_text(KEEPER)
    started: list[subprocess.Popen[str]] = []
    yield script, started
    for proc in started:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and the keeper below it
        proc.wait()


def start(keeper: tuple[Path, list[subprocess.Popen[str]]], status: str, launch: str, shell: bool = False) -> int:
    script, started = keeper
    argv = [sys.executable, str(script), status]
    # Through a shell that stays the parent: the pane's process is then not Claude itself.
    command = ["sh", "-c", '"$@"; exit 0', "sh", *argv] if shell else argv
    env = {**os.environ, "MUX_LAUNCH": launch}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    started.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc.pid


def sessions_dir() -> Path:
    return Path(os.environ["HOME"]) / ".claude" / "sessions"


def test_the_status_of_the_tasks_own_claude_is_read_as_an_event(
    keeper: tuple[Path, list[subprocess.Popen[str]]],
) -> None:
    pid = start(keeper, "waiting", "L1")
    found = claude_status_file.event(pid, "L1")
    assert found is not None
    assert (found.state, found.ts, found.name, found.detail) == (
        State.WAITING,
        1796000000.0,
        "session status waiting",
        "permission prompt",
    )
    below_a_shell = start(keeper, "busy", "L2", shell=True)
    found = claude_status_file.event(below_a_shell, "L2")
    assert found is not None and found.state is State.WORKING


def test_another_launch_a_reused_pid_or_a_garbage_file_is_no_signal(
    keeper: tuple[Path, list[subprocess.Popen[str]]],
) -> None:
    pid = start(keeper, "idle", "L1")
    assert claude_status_file.event(pid, "L2") is None  # a Claude started by hand, or by an earlier launch
    assert claude_status_file.event(pid, "") is None
    path = sessions_dir() / f"{pid}.json"
    record = json.loads(path.read_text())
    for bad in (
        {**record, "procStart": "1"},  # the file of an earlier process that had this pid
        {**record, "pid": pid + 1},
        {**record, "status": "thinking"},  # a status this mux does not know
        {**record, "statusUpdatedAt": "soon"},
    ):
        path.write_text(json.dumps(bad))
        assert claude_status_file.event(pid, "L1") is None, bad
    for garbage in (b"", b"{torn", b"[1, 2]", b'{"pid": ' + b"1" * 100_000 + b"}"):
        path.write_bytes(garbage)
        assert claude_status_file.event(pid, "L1") is None, garbage[:20]
    path.unlink()
    assert claude_status_file.event(pid, "L1") is None


def test_a_turn_cut_short_without_a_stop_hook_is_idle_from_the_status_file(repo: Path, fake_profile: Path) -> None:
    """Claude Code fires no Stop when Esc interrupts a turn; its status file says idle at once."""
    profile_with(fake_profile, fake_profile.parent / "fakeclaude.toml", hooks="claude")
    new_task(repo, "cut", "-a", "fakeclaude", "-p", "hello")
    wait_until(lambda: mux_ls(repo)["cut"]["reason"] == "hook: Stop", timeout=30)
    run_mux("send", "cut", "cut-short", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["cut"])["reason"] != "hook: Stop" and r["state"] == "idle" and r)
    assert row["reason"] == "hook: session status idle"
