"""Hermetic fixtures: a private tmux server per test, real git repos in tmp dirs, a pinned identity."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import libtmux
import pytest
import tomli_w

pytest_plugins = ["realagents.plugin"]

TESTS = Path(__file__).resolve().parent
FAKE_AGENT = TESTS / "fake_agent.py"

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the mux processes the tests start. A suite started in the background by a script
    (`.ci/run ... &`) inherits SIGINT ignored, and an ignored signal stays ignored across exec: on a fresh clone
    `ls --watch` and `inbox --follow` then ran past their deadlines after the tests' Ctrl-C. A handler, unlike
    SIG_IGN, is reset by exec, so the children get the default one back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_until(predicate: Callable[[], T | Literal[False] | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll until predicate returns something truthy; fail the test with the last value at the deadline.

    What it returns is truthy, so never None or False: `lambda: pane_of(...)` gives a pane, `lambda: ok and row` a row.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)


def git(cwd: Path | str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    (path / ".gitignore").write_text("__pycache__/\n*.log\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture(autouse=True)
def hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Pin HOME, XDG dirs and git identity, and give the test its own tmux server (killed afterwards)."""
    home = tmp_path_factory.mktemp("home")
    for var in ("TMUX", "TMUX_PANE", "MUX_TASK", "MUX_REPO", "MUX_WORKTREE", "MUX_PORT", "MUX_LAUNCH", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("GIT_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    socket = f"muxtest-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MUX_TMUX_SOCKET", socket)
    yield socket
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    # kill-server leaves the socket file behind.
    tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
    Path(tmpdir, f"tmux-{os.getuid()}", socket).unlink(missing_ok=True)


@pytest.fixture
def tmux_socket(hermetic: str) -> str:
    return hermetic


@pytest.fixture
def server(hermetic: str) -> Iterator[libtmux.Server]:
    """The test's tmux server as libtmux objects (as libtmux's own pytest plugin gives one): on the private
    socket of `hermetic`, killed at teardown."""
    server = libtmux.Server(socket_name=hermetic)
    yield server
    if server.is_alive():
        server.kill()


def window_task(window: libtmux.Window) -> str:
    """The task mux opened a window for (its window option `@mux_task`); "" for any other window (the monitor's)
    and for a window gone meanwhile. Read as a format: libtmux's show_option makes "007" the number 7."""
    shown = window.cmd("display-message", "-p", "#{@mux_task}").stdout
    return str(shown[0]) if shown else ""


def window_tasks(server: libtmux.Server) -> list[str]:
    """The task of each of mux's task windows on the server, in tmux's order (a task twice: two windows)."""
    return [task for window in server.windows if (task := window_task(window))]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj")


@pytest.fixture
def fake_profile() -> Path:
    """Install the fake agent as the user profile `fake`."""
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    profile = agents / "fake.toml"
    write_toml(
        profile,
        {
            "command": [sys.executable, str(FAKE_AGENT)],
            "prompt_args": ["{prompt}"],
            "status": {
                "idle_after": 1.0,
                # Anchored at the end of the screen: an answered question stays visible above the new prompt.
                "waiting": [r"\(y/n\)\s*\Z"],
                "working": [r"working\.\.\. \d+\s*\Z"],
                "idle": [r"fake>\s*\Z"],
            },
        },
    )
    return profile


def write_toml(path: Path, data: Mapping[str, object]) -> None:
    """A config file as mux reads it, written by a TOML writer (no hand-made quoting to get wrong)."""
    path.write_text(tomli_w.dumps(data))


def profile_with(path: Path, target: Path | None = None, **changes: object) -> Path:
    """The profile at path with top-level keys set (or, given None, removed), written to target (default: path)."""
    data: dict[str, object] = tomllib.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    write_toml(target or path, data)
    return target or path


def recording_notify_send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `notify-send` first on PATH that appends each notification to the file returned, as `TITLE<tab>BODY`."""
    bin_dir = tmp_path / "notify-bin"
    bin_dir.mkdir()
    sent = tmp_path / "notifications"
    notify = bin_dir / "notify-send"
    notify.write_text(f'#!/bin/sh\nprintf "%s\\t%s\\n" "$1" "$2" >> {sent}\n')
    notify.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return sent


def run_mux(
    *args: str, cwd: Path | str, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real `mux` entry point in a child process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "muxagent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mux {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def run_mux_on_terminal(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run `mux` with a pseudo-terminal as its stdout and stderr, as in a user's shell: (exit code, all output)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            os.execv(sys.executable, [sys.executable, "-m", "muxagent", *args])
        finally:
            os._exit(127)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"mux {' '.join(args)} did not finish within {timeout} s")
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def modules_imported(argv: list[str], cwd: Path) -> set[str]:
    """Modules `python -X importtime ARGV` imports beyond what this interpreter imports to start at all (`site`
    runs the .pth files of site-packages; CI's certifi hook imports pathlib before mux's first line runs, and
    test_the_fast_path_finds_the_repository_git_finds_or_leaves_it_to_the_cli blamed the fast path for it)."""

    def loaded(args: list[str]) -> set[str]:
        proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
        return {line.rsplit("|", 1)[1].strip() for line in lines}

    return loaded(argv) - loaded(["-c", "pass"])


def mux_ls(cwd: Path | str) -> dict[str, dict[str, Any]]:
    rows = json.loads(run_mux("ls", "--json", cwd=cwd).stdout)
    return {row["name"]: row for row in rows}


def new_task(repo: Path, name: str, *args: str) -> Path:
    """`mux new NAME ARGS...`, then wait until the task's window has checked its files out; returns the worktree."""
    run_mux("new", name, *args, cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)[name])["reason"] != "checking out" and r)
    return Path(row["worktree"])
