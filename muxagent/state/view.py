"""The live view: every task's report as the monitor last computed it, in `<state dir>/view.json`.

The monitor keeps each task's report current by working only on what changed (monitor/keeper.py) and publishes
it here whole, atomically, once a tick: each task's row of `mux ls --json` as it would print it, and beside it the
times the row has only to the second or not at all. `mux ls`, `status-line`, `next-waiting` and `wait` show it
instead of asking tmux and git again, but only when it can be trusted (view_file.usable, the one reading of the
file): the monitor that wrote it still holds the monitor lock (by pid: a monitor killed with SIGKILL loses it at
once, and no other holder will do), it covers the registry as it is now (the generation in tasks.json, and the
file's size, mtime and inode: a hand edit that keeps the generation is another registry), no command changed
anything since its tick began (the epoch in `view.epoch`, which every command that changes something renews as
it ends: a reader sees its own writes, a sync conflict as `waiting` the moment `mux sync` returned), and the tick
it comes from looked at the tasks less than MAX_AGE ago. Anything else, a file torn or written by hand included,
and the reader does the full work. The view is for showing: no command decides what is safe to change or delete
from it.

Pure data and files: no tmux, no git.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent.model import Changes, State, TaskReport, TaskStatus
from muxagent.state import files, view_file
from muxagent.state.view_file import EPOCH_FILE as EPOCH_FILE
from muxagent.state.view_file import MAX_AGE as MAX_AGE
from muxagent.state.view_file import VIEW_FILE as VIEW_FILE
from muxagent.state.view_file import Stamp
from muxagent.state.view_file import epoch as epoch

_CHANGE_FIELDS = ("dirty_files", "added_lines", "removed_lines", "ahead", "behind")


@dataclass(frozen=True)
class Entry:
    """One task: its row of `mux ls --json` (family fields included), and the times behind it in epoch seconds
    (`status_at`, `changes_at`: when its state and its changes were computed)."""

    row: Mapping[str, Any]
    last_activity: float | None
    exit_status: int | None
    last_change: float | None
    hook_ts: float | None
    status_at: float
    changes_at: float | None

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(State(self.row["state"]), self.row["reason"], self.exit_status, self.last_activity)

    @property
    def changes(self) -> Changes | None:
        if self.row["dirty_files"] is None:
            return None
        return Changes(**{name: self.row[name] for name in _CHANGE_FIELDS})

    @property
    def conflicts(self) -> tuple[Mapping[str, object], ...]:
        return tuple(self.row["conflicts"])

    @property
    def inbox_unread(self) -> int:
        count: int = self.row["inbox_unread"]
        return count


def entry_of(item: TaskReport, row: Mapping[str, Any], status_at: float, changes_at: float | None) -> Entry:
    """The entry of `item`, whose row (render.rows) is `row`."""
    return Entry(
        row, item.status.last_activity, item.status.exit_status, item.last_change, item.hook_ts, status_at, changes_at
    )


@dataclass(frozen=True)
class View:
    generation: int  # counts the monitor's publications
    registry: str  # the registry generation (state/store.py) the tasks come from
    registry_stamp: Stamp  # and its file's (view_file.stamp_of)
    looked_at: float  # when the tick began to look: its heartbeat
    pid: int
    tasks: Mapping[str, Entry]
    epoch: str = ""  # what `view.epoch` held when its tick began (see `renew_epoch`)


def publish(state_dir: Path, view: View) -> None:
    # Not durable: after a power cut no monitor holds the lock, so no reader trusts the file anyway.
    files.atomic_write(state_dir / VIEW_FILE, json.dumps(_to_json(view)).encode(), durable=False)


def read(state_dir: Path) -> View | None:
    """The view on disk; None when there is none, or it is torn, foreign or of another format."""
    return _from_json(view_file.read(state_dir))


def usable(state_dir: Path, registry: str | None, stamp: Stamp | None, now: float) -> View | None:
    """The view, if a reader may show it (see the module's docstring) for the registry of generation `registry`
    whose file had `stamp`."""
    return _from_json(view_file.usable(state_dir, registry, stamp, now))


def writer_alive(state_dir: Path, found: View) -> bool:
    """Whether the monitor that published `found` still runs and holds the monitor lock (a SIGKILL lets go of it)."""
    return view_file.writer_alive(state_dir, found.pid)


def renew_epoch(state_dir: Path) -> None:
    """Say that something changed: no view from a tick that began before now is shown any more."""
    with contextlib.suppress(OSError):  # read-only or full: readers then may lag up to MAX_AGE, as before
        files.atomic_write(state_dir / EPOCH_FILE, secrets.token_hex(8).encode(), durable=False)


def remove(state_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (state_dir / VIEW_FILE).unlink()


def _to_json(view: View) -> dict[str, Any]:
    return {
        "version": view_file.FORMAT_VERSION,
        "generation": view.generation,
        "registry": view.registry,
        "registry_stamp": list(view.registry_stamp),
        "looked_at": view.looked_at,
        "pid": view.pid,
        "epoch": view.epoch,
        "tasks": {
            name: {
                "row": dict(entry.row),
                "last_activity": entry.last_activity,
                "exit_status": entry.exit_status,
                "last_change": entry.last_change,
                "hook_ts": entry.hook_ts,
                "status_at": entry.status_at,
                "changes_at": entry.changes_at,
            }
            for name, entry in view.tasks.items()
        },
    }


def _from_json(doc: Mapping[str, Any] | None) -> View | None:
    """The View of a document view_file has checked."""
    if doc is None:
        return None
    return View(
        generation=doc["generation"],
        registry=doc["registry"],
        registry_stamp=tuple(doc["registry_stamp"]),
        looked_at=float(doc["looked_at"]),
        pid=doc["pid"],
        tasks={
            name: Entry(
                item["row"],
                _float(item["last_activity"]),
                item["exit_status"],
                _float(item["last_change"]),
                _float(item["hook_ts"]),
                float(item["status_at"]),
                _float(item["changes_at"]),
            )
            for name, item in doc["tasks"].items()
        },
        epoch=doc["epoch"],
    )


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
