"""The live view: every task's report as the monitor last computed it, in `<state dir>/view.json`.

The monitor keeps each task's report current by working only on what changed (monitor/keeper.py) and publishes
it here whole, atomically, once a tick. `mux ls`, `status-line`, `next-waiting` and `wait` show it instead of
asking tmux and git again, but only when it can be trusted (`usable`): the monitor that wrote it still holds the
monitor lock (by pid: a monitor killed with SIGKILL loses it at once, and no other holder will do), it covers the
registry as it is now (the generation in tasks.json), no command changed anything since its tick began (the epoch
in `view.epoch`, which every command that changes something renews as it ends: a reader sees its own writes, a
sync conflict as `waiting` the moment `mux sync` returned), and the tick it comes from looked at the tasks less
than MAX_AGE ago. Anything else, a file torn or written by hand included, and the reader does the full work. The view
is for showing: no command decides what is safe to change or delete from it.

Pure data and files: no tmux, no git.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from muxagent.model import Changes, State, TaskStatus
from muxagent.state import files, monitor_state

VIEW_FILE = "view.json"
EPOCH_FILE = "view.epoch"
FORMAT_VERSION = 1
# Issue 14's bound: a reader never shows a state older than 1 s after a hook event (2 s after a file change). The
# monitor reads hook events, screens and changed worktrees at the start of a tick (`looked_at`), so a view
# whose tick looked less than this long ago has seen every event older than this.
MAX_AGE = 1.0

T = TypeVar("T")
_CHANGE_FIELDS = ("dirty_files", "added_lines", "removed_lines", "ahead", "behind")


@dataclass(frozen=True)
class Entry:
    """One task's fields, each with the time it was computed (`status_at`, `changes_at`; epoch seconds)."""

    status: TaskStatus
    changes: Changes | None
    conflicts: tuple[Mapping[str, object], ...]
    last_change: float | None
    inbox_unread: int
    hook_ts: float | None
    status_at: float
    changes_at: float | None


@dataclass(frozen=True)
class View:
    generation: int  # counts the monitor's publications
    registry: str  # the registry generation (state/store.py) the tasks come from
    looked_at: float  # when the tick began to look: its heartbeat
    pid: int
    tasks: Mapping[str, Entry]
    epoch: str = ""  # what `view.epoch` held when its tick began (see `renew_epoch`)


def publish(state_dir: Path, view: View) -> None:
    # Not durable: after a power cut no monitor holds the lock, so no reader trusts the file anyway.
    files.atomic_write(state_dir / VIEW_FILE, json.dumps(_to_json(view)).encode(), durable=False)


def read(state_dir: Path) -> View | None:
    """The view on disk; None when there is none, or it is torn, foreign or of another format."""
    try:
        doc = json.loads((state_dir / VIEW_FILE).read_bytes())
        if doc["version"] != FORMAT_VERSION:
            return None
        return View(
            generation=_int(doc["generation"]),
            registry=_str(doc["registry"]),
            looked_at=_number(doc["looked_at"]),
            pid=_int(doc["pid"]),
            tasks={_str(name): _entry(item) for name, item in doc["tasks"].items()},
            epoch=_str(doc["epoch"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def usable(state_dir: Path, registry: str | None, now: float) -> View | None:
    """The view, if a reader may show it (see the module's docstring) for the registry of generation `registry`."""
    if registry is None:
        return None  # a registry without a generation (written by hand or by an older mux): no view covers it
    found = read(state_dir)
    if found is None or found.registry != registry or not 0 <= now - found.looked_at < MAX_AGE:
        return None
    if found.epoch != epoch(state_dir):
        return None  # a command changed something after its tick began to look
    # Checked after the read: the monitor that wrote what was read was alive after it was read.
    return found if writer_alive(state_dir, found) else None


def writer_alive(state_dir: Path, found: View) -> bool:
    """Whether the monitor that published `found` still runs and holds the monitor lock (a SIGKILL lets go of it)."""
    return monitor_state.alive(state_dir, monitor_state.MonitorState(pid=found.pid))


def epoch(state_dir: Path) -> str:
    """The token the last command that changed something left ("" before any)."""
    try:
        return (state_dir / EPOCH_FILE).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def renew_epoch(state_dir: Path) -> None:
    """Say that something changed: no view from a tick that began before now is shown any more."""
    with contextlib.suppress(OSError):  # read-only or full: readers then may lag up to MAX_AGE, as before
        files.atomic_write(state_dir / EPOCH_FILE, secrets.token_hex(8).encode(), durable=False)


def remove(state_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (state_dir / VIEW_FILE).unlink()


def _to_json(view: View) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "generation": view.generation,
        "registry": view.registry,
        "looked_at": view.looked_at,
        "pid": view.pid,
        "epoch": view.epoch,
        "tasks": {name: _entry_to_json(entry) for name, entry in view.tasks.items()},
    }


def _entry_to_json(entry: Entry) -> dict[str, Any]:
    st, ch = entry.status, entry.changes
    return {
        "state": st.state.value,
        "reason": st.reason,
        "exit_status": st.exit_status,
        "last_activity": st.last_activity,
        "changes": None if ch is None else {name: getattr(ch, name) for name in _CHANGE_FIELDS},
        "conflicts": [dict(c) for c in entry.conflicts],
        "last_change": entry.last_change,
        "inbox_unread": entry.inbox_unread,
        "hook_ts": entry.hook_ts,
        "status_at": entry.status_at,
        "changes_at": entry.changes_at,
    }


def _entry(doc: Mapping[str, Any]) -> Entry:
    changes = doc["changes"]
    conflicts = doc["conflicts"]
    if not isinstance(conflicts, list) or not all(isinstance(c, dict) for c in conflicts):
        raise ValueError("conflicts")
    return Entry(
        status=TaskStatus(
            State(doc["state"]),
            _str(doc["reason"]),
            _optional(_int, doc["exit_status"]),
            _optional(_number, doc["last_activity"]),
        ),
        changes=None if changes is None else Changes(**{name: _int(changes[name]) for name in _CHANGE_FIELDS}),
        conflicts=tuple(conflicts),
        last_change=_optional(_number, doc["last_change"]),
        inbox_unread=_int(doc["inbox_unread"]),
        hook_ts=_optional(_number, doc["hook_ts"]),
        status_at=_number(doc["status_at"]),
        changes_at=_optional(_number, doc["changes_at"]),
    )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise TypeError("not a number")
    return float(value)


def _optional(parse: Callable[[object], T], value: object) -> T | None:
    return None if value is None else parse(value)
