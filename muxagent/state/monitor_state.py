"""What the monitor reports about itself in `<state dir>/monitor.json`: read by `mux ls` and `mux doctor`; and
whether the monitor that wrote it still runs."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from muxagent.state import files

STATUS_FILE = "monitor.json"
# Held by the running monitor for as long as it lives (flock: it dies with the process).
LOCK_FILE = "monitor.lock"


@dataclass(frozen=True)
class MonitorState:
    pid: int = 0
    watching: list[str] = field(default_factory=list)
    # Worktrees watchdog could not watch, with the reason: their changes are only seen by `git status`.
    polling: dict[str, str] = field(default_factory=dict)
    # When files last changed in each task's worktree (epoch seconds).
    last_change: dict[str, float] = field(default_factory=dict)


def write(state_dir: Path, state: MonitorState) -> None:
    # Not durable: a monitor that a power cut stopped is not running any more, whatever the file says.
    files.atomic_write(state_dir / STATUS_FILE, json.dumps(asdict(state)).encode(), durable=False)


def read(state_dir: Path) -> MonitorState | None:
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        return MonitorState(
            pid=int(data["pid"]),
            watching=[str(name) for name in data["watching"]],
            polling={str(k): str(v) for k, v in data["polling"].items()},
            last_change={str(k): float(v) for k, v in data["last_change"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def clear(state_dir: Path) -> None:
    (state_dir / STATUS_FILE).unlink(missing_ok=True)


def alive(state_dir: Path, state: MonitorState) -> bool:
    """Whether the monitor that wrote `state` still runs: its pid lives and holds the monitor's lock. After the tmux
    server died, monitor.json still named a pid that was gone and `mux doctor` called it running."""
    if state.pid <= 0:
        return False
    try:
        os.kill(state.pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process given the pid since
        return False
    path = state_dir / LOCK_FILE
    if not path.exists():
        return False
    holders = _flock_holders(path)
    if holders is not None:
        # The lock's holder by pid: a process that got the dead monitor's pid again holds no lock on this file.
        return state.pid in holders
    return _lock_taken(path)


def _flock_holders(path: Path) -> set[int] | None:
    """The pids holding a flock on `path`, from Linux's /proc/locks; None where that cannot be read."""
    try:
        info = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = set()
    for line in table.splitlines():
        # `N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE START END`; a waiter's line has `->` after `N:`.
        words = line.split()
        if len(words) >= 6 and words[1] == "FLOCK" and words[5] == device and words[4].isdigit():
            holders.add(int(words[4]))
    return holders


def _lock_taken(path: Path) -> bool:
    """Whether some process holds the lock at `path`: tried without waiting, let go at once."""
    try:
        with files.locked(path, wait=False):
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False
