"""What the monitor reports about itself in `<state dir>/monitor.json`: read by `mux ls` and `mux doctor`; and
whether the monitor that wrote it still runs."""

from __future__ import annotations

import json
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
    return files.holds_lock(state.pid, state_dir / LOCK_FILE)
