"""The live view's file, `<state dir>/view.json`, read and trusted in one place (state/view.py says what it holds
and writes it).

Both readers come here: view.py, which makes the typed View the commands use, and `mux ls`'s fast path
(muxagent/fastpath.py), which prints the rows the view holds before the CLI is imported. So this module imports
only cheap stdlib modules and files.py: no pathlib, no dataclasses, no model (the fast path's budget is the cost of
starting Python and reading a file or two).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from muxagent.state import files

VIEW_FILE = "view.json"
EPOCH_FILE = "view.epoch"
FORMAT_VERSION = 2
# Issue 14's bound: a reader never shows a state older than 1 s after a hook event (2 s after a file change). The
# monitor reads hook events, screens and changed worktrees at the start of a tick (`looked_at`), so a view
# whose tick looked less than this long ago has seen every event older than this.
MAX_AGE = 1.0
# Mirrors of store.py's and monitor_state.py's names (tests pin them equal): importing those costs the fast path
# the model and dataclasses.
TASKS_FILE = "tasks.json"
MONITOR_LOCK = "monitor.lock"

_STATES = frozenset({"starting", "working", "waiting", "idle", "exited", "missing", "unknown"})
_CHANGE_FIELDS = ("dirty_files", "added_lines", "removed_lines", "ahead", "behind")

Doc = dict[str, Any]
# What identifies one version of tasks.json on disk: its size, mtime_ns and inode. A hand edit that keeps the
# registry's generation still changes these (test_a_hand_edited_registry_is_never_covered_by_the_view).
Stamp = tuple[int, int, int]


def stamp_of(info: os.stat_result) -> Stamp:
    return (info.st_size, info.st_mtime_ns, info.st_ino)


def read(state_dir: str | os.PathLike[str]) -> Doc | None:
    """The view on disk, checked to hold what its readers take from it; None when there is none, or it is torn,
    foreign or of another format."""
    try:
        with open(_path(state_dir, VIEW_FILE), "rb") as file:
            doc = json.loads(file.read())
        return doc if _checked(doc) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def usable(state_dir: str | os.PathLike[str], registry: str | None, stamp: Stamp | None, now: float) -> Doc | None:
    """The view, if a reader may show it for the registry of generation `registry` whose file had `stamp`: the
    monitor that wrote it still holds the monitor lock, it was made from that very registry file, no command changed
    anything since its tick began (the epoch), and that tick looked less than MAX_AGE ago."""
    if registry is None or stamp is None:
        return None  # a registry without a generation (written by hand or by an older mux): no view covers it
    found = read(state_dir)
    if found is None or found["registry"] != registry or tuple(found["registry_stamp"]) != stamp:
        return None
    if not 0 <= now - found["looked_at"] < MAX_AGE:
        return None
    if found["epoch"] != epoch(state_dir):
        return None  # a command changed something after its tick began to look
    # Checked after the read: the monitor that wrote what was read was alive after it was read.
    return found if writer_alive(state_dir, found["pid"]) else None


def writer_alive(state_dir: str | os.PathLike[str], pid: int) -> bool:
    """Whether the monitor `pid` still runs and holds the monitor lock (a SIGKILL lets go of it)."""
    return files.holds_lock(pid, _path(state_dir, MONITOR_LOCK))


def epoch(state_dir: str | os.PathLike[str]) -> str:
    """The token the last command that changed something left ("" before any)."""
    try:
        with open(_path(state_dir, EPOCH_FILE), encoding="ascii", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return ""


def _path(state_dir: str | os.PathLike[str], name: str) -> str:
    return os.path.join(os.fspath(state_dir), name)


def _checked(doc: Any) -> bool:
    """Whether `doc` is a view of this format whose every field a reader takes has its type (else a reader's
    rendering would fail half-way, or show what no monitor wrote)."""
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        return False
    stamp = doc["registry_stamp"]
    if not (isinstance(stamp, list) and len(stamp) == 3 and all(_is_int(part) for part in stamp)):
        return False
    fields_ok = (
        _is_int(doc["generation"])
        and isinstance(doc["registry"], str)
        and _is_number(doc["looked_at"])
        and _is_int(doc["pid"])
        and isinstance(doc["epoch"], str)
        and isinstance(doc["tasks"], dict)
    )
    return fields_ok and all(_entry_ok(name, entry) for name, entry in doc["tasks"].items())


def _entry_ok(name: str, entry: Any) -> bool:
    row = entry["row"]
    if not isinstance(row, dict) or row["name"] != name or row["state"] not in _STATES:
        return False
    counts = [row[field] for field in _CHANGE_FIELDS]
    conflicts = row["conflicts"]
    return (
        (all(_is_int(count) for count in counts) or all(count is None for count in counts))
        and isinstance(row["reason"], str)
        and isinstance(row["agent"], str)
        and isinstance(row["created"], str)
        and _is_int(row["inbox_unread"])
        and isinstance(conflicts, list)
        and all(isinstance(clash, dict) for clash in conflicts)
        and (row["group"] is None or isinstance(row["group"], str))
        and (row["parent"] is None or isinstance(row["parent"], str))
        and isinstance(row["children"], list)
        and all(isinstance(child, str) for child in row["children"])
        and all(_is_optional_number(entry[key]) for key in ("last_activity", "last_change", "hook_ts", "changes_at"))
        and _is_number(entry["status_at"])
        and (entry["exit_status"] is None or _is_int(entry["exit_status"]))
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_optional_number(value: object) -> bool:
    return value is None or _is_number(value)
