"""Helpers of the hostile-input tests: run mux with any bytes, check the one-line refusal, snapshot what is on disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libtmux
from conftest import git, window_task
from merge_helpers import refs

from muxagent.monitor import daemon


def run_raw(
    *args: str, cwd: Path | str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`mux ARGS`, whatever bytes the arguments hold (surrogates go out as the bytes they stand for)."""
    return subprocess.run(
        [sys.executable, "-m", "muxagent", *args],
        cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """A refusal as the README promises it: a non-zero exit and exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc
    lines = proc.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("mux: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


# What the monitor rewrites on its own while tasks live (its status, the caches `ls` keeps), and lock files, which
# hold nothing: not state a refused command could have changed.
# Caches and what the monitor says of itself, no task's state: the live view and its epoch, which every command
# that may change anything renews as it ends, refused or not.
_NOT_STATE = {"monitor.json", "changes.json", "radar.json", "view.json", "view.epoch"}


def _not_state(name: str) -> bool:
    # A rewrite's temp file (`.monitor.json.PID.THREAD.tmp`, see muxagent.state.files) is renamed away at any time.
    temp_of = name[1:].rsplit(".", 3)[0] if name.startswith(".") and name.endswith(".tmp") else None
    return name in _NOT_STATE or temp_of in _NOT_STATE or name == "lock" or name.endswith(".lock")


def _tree(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if _not_state(name):
                continue
            digest = hashlib.sha1(path.read_bytes()).hexdigest() if not path.is_symlink() else "link"
            found[os.fsencode(path.relative_to(root)).decode("utf-8", "backslashreplace")] = digest
    return found


def disk_state(repo: Path, socket: str) -> tuple[object, ...]:
    """Everything a refused command must leave as it was: refs, worktrees, folders next to the repo, the files in
    `.git/mux` and the tmux windows (by id and task: the monitor renames them as states change). The monitor's own
    windows are left out: a second monitor that a `mux ls` started while the first was starting closes its window
    once it finds the lock taken (CI: a window vanished while `new` was refusing a prompt that is not UTF-8)."""
    windows = [
        (window.window_id, window_task(window))
        for window in libtmux.Server(socket_name=socket).windows
        if not str(window.session_name).endswith(daemon.SESSION_SUFFIX)
    ]
    return (
        refs(repo),
        git(repo, "worktree", "list", "--porcelain"),
        sorted(p.name for p in repo.parent.iterdir()),
        _tree(repo / ".git" / "mux"),
        windows,
    )


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a folder tree unwritable, even for root (which ignores modes): `chattr +i` then."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        undo = ["chmod", "-R", "u+w", str(folder)]
    else:
        if shutil.which("chattr") is None:
            raise RuntimeError("running as root without chattr: cannot make a folder read-only")
        # The monitor may rename a temp file away mid-walk, which makes `chattr -R` fail: the folder itself must
        # take the flag, and whatever is left in it once it has.
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True)
        undo = ["chattr", "-R", "-i", str(folder)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)
