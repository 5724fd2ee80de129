"""Each parent task's inbox: what its sub-tasks reached (idle, waiting, exited), kept in `<state dir>/inbox/`.

`NAME.jsonl` is append-only, one JSON object a line, each entry's id one above the last: `mux inbox` reads it
without consuming it. Two cursors beside it only move forward: `NAME.read` (the last entry `mux inbox` showed, for
the unread count) and `NAME.noticed` (the last entry told to the parent's agent). `.children.json` is the monitor's
memory of each sub-task's last state, so that its restart neither repeats a signal nor loses one. Names starting
with a dot are no task's, so none of these files can be a task's inbox.

Appends take the inbox lock, so two writers never give out one id, and are fsynced: a signal is on disk once the
monitor goes on. A line torn by a crash (SIGKILL mid-write, a power cut) is skipped on reading, and the next append
starts a new line after it, so a torn line never hides an entry before or after it. An append the disk refused
part of (full) is cut back off, so a retry never writes one entry twice. `forget` drops what `mux gc` says is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

from muxagent import naming
from muxagent.errors import InvalidNameError, StoreError
from muxagent.state import files
from muxagent.state.store import dumps

INBOX_DIR = "inbox"
_CHILDREN = ".children.json"
# The files of one parent's inbox: the entries and the two cursors.
_SUFFIXES = (".jsonl", ".read", ".noticed")
_CHILDREN_VERSION = 1
_CHANGE_KEYS = ("files", "added", "removed", "ahead")


@dataclass(frozen=True)
class EntryChanges:
    """A sub-task's work against its base when it got there: files touched, lines, commits ahead."""

    files: int
    added: int
    removed: int
    ahead: int

    def summary(self) -> str:
        """`+12 -3 in 2 files, 1 commit ahead`, or `no changes`."""
        if not (self.files or self.ahead):
            return "no changes"
        return f"+{self.added} -{self.removed} in {_plural(self.files, 'file')}, {_plural(self.ahead, 'commit')} ahead"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Entry:
    id: int
    time: str  # model.utc_iso
    child: str
    state: str
    reason: str
    exit_status: int | None = None
    changes: EntryChanges | None = None  # None when git could not read the worktree (removed, mid-checkout)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def changes_summary(self) -> str:
        return self.changes.summary() if self.changes is not None else "changes unknown"


@dataclass(frozen=True)
class Recorded:
    """The monitor's memory of one sub-task: its parent, which incarnation (`created`), its last state, the id
    of the last entry it wrote for it (0: none yet), and the time of the hook event it had seen then (None: none)."""

    parent: str
    created: str
    state: str
    entry: int = 0
    hook_ts: float | None = None


def _dir(state_dir: Path) -> Path:
    return state_dir / INBOX_DIR


def _path(state_dir: Path, parent: str, suffix: str) -> Path:
    # The name comes from the registry, which a hand edit can fill with anything: never a path out of the folder.
    return _dir(state_dir) / f"{naming.validate_name(parent)}{suffix}"


def _locked(state_dir: Path) -> AbstractContextManager[Path]:
    return files.locked_folder(_dir(state_dir), "the inbox")


def _entry(line: bytes) -> Entry | None:
    try:
        doc = json.loads(line.decode("utf-8", "surrogateescape"))
        changes = doc.get("changes")
        counts = None if changes is None else EntryChanges(*(int(changes[key]) for key in _CHANGE_KEYS))
        return Entry(
            id=int(doc["id"]),
            time=str(doc["time"]),
            child=str(doc["child"]),
            state=str(doc["state"]),
            reason=str(doc["reason"]),
            exit_status=None if doc.get("exit_status") is None else int(doc["exit_status"]),
            changes=counts,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn line, or one a later mux wrote differently


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc


def _parse(data: bytes) -> list[Entry]:
    found = (_entry(line) for line in data.split(b"\n") if line)
    return [entry for entry in found if entry is not None]


def entries(state_dir: Path, parent: str, since: int = 0, from_time: str = "") -> list[Entry]:
    """The parent's entries with an id above `since` and a time from `from_time` on (model.utc_iso), oldest first."""
    found = _parse(_read_bytes(_path(state_dir, parent, ".jsonl")))
    return [entry for entry in found if entry.id > since and entry.time >= from_time]


def append(
    state_dir: Path,
    parent: str,
    *,
    time: str,
    child: str,
    state: str,
    reason: str,
    exit_status: int | None,
    changes: EntryChanges | None,
) -> Entry:
    """Add an entry at the end of the parent's inbox, on disk before this returns."""
    path = _path(state_dir, parent, ".jsonl")
    with _locked(state_dir):
        data = _read_bytes(path)
        last = max((entry.id for entry in _parse(data)), default=0)
        entry = Entry(last + 1, time, child, state, reason, exit_status, changes)
        line = (dumps(entry.to_json(), separators=(",", ":")) + "\n").encode()
        # After a torn line (a crash mid-append), the new entry starts a line of its own.
        if data and not data.endswith(b"\n"):
            line = b"\n" + line
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, files.NEW_FILE_MODE)
        except OSError as exc:
            raise StoreError(f"cannot append to {path}: {exc.strerror}") from exc
        try:
            _write_line(fd, line, path)
        except StoreError:
            # A full disk once took all of the line but its newline: read back, that was a whole entry, and the
            # monitor's retry wrote it again under the next id. Whatever got written goes: the entry is on disk
            # whole or not at all (a kill mid-write still tears it, and a torn line is skipped).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, len(data))
            raise
        finally:
            os.close(fd)
    return entry


def _write_line(fd: int, line: bytes, path: Path) -> None:
    try:
        written = os.write(fd, line)
        if written == len(line):
            os.fsync(fd)
    except OSError as exc:
        raise StoreError(f"cannot append to {path}: {exc.strerror}") from exc
    if written != len(line):
        raise StoreError(f"cannot append to {path}: the disk took {written} of {len(line)} bytes (full?)")


def _cursor(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0)
    except (OSError, ValueError):
        return 0


def _advance(state_dir: Path, parent: str, suffix: str, upto: int) -> None:
    path = _path(state_dir, parent, suffix)
    with _locked(state_dir):
        if upto <= _cursor(path):
            return  # a reader that started earlier never moves the cursor back
        try:
            files.atomic_write(path, f"{upto}\n".encode())
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def read_upto(state_dir: Path, parent: str) -> int:
    """The id of the last entry `mux inbox` showed (0: none)."""
    return _cursor(_path(state_dir, parent, ".read"))


def mark_read(state_dir: Path, parent: str, upto: int) -> None:
    _advance(state_dir, parent, ".read", upto)


def noticed_upto(state_dir: Path, parent: str) -> int:
    """The id of the last entry told to the parent's agent (0: none)."""
    return _cursor(_path(state_dir, parent, ".noticed"))


def mark_noticed(state_dir: Path, parent: str, upto: int) -> None:
    _advance(state_dir, parent, ".noticed", upto)


def unread_counts(state_dir: Path, created: Mapping[str, str]) -> dict[str, int]:
    """Task -> how many entries of its inbox `mux inbox` has not shown yet, for the tasks in `created` (name -> when
    the task was created: an entry older than that was left by a removed task of the same name)."""
    counts = {}
    # One listing of the folder (none when no task ever had a sub-task), then only the tasks that have an inbox are
    # read: at 100 tasks with one parent, `mux ls` opens one inbox instead of trying 100.
    for name in set(created) & set(parents(state_dir)):
        since_time = created[name]
        try:
            unread = len(entries(state_dir, name, since=read_upto(state_dir, name), from_time=since_time))
        except (StoreError, InvalidNameError):
            continue  # a record or a file no mux wrote: `mux inbox NAME` says what is wrong
        if unread:
            counts[name] = unread
    return counts


def parents(state_dir: Path) -> list[str]:
    """The tasks that have an inbox."""
    try:
        return sorted(path.name.removesuffix(".jsonl") for path in _dir(state_dir).glob("*.jsonl"))
    except OSError:
        return []


def load_recorded(state_dir: Path) -> dict[str, Recorded]:
    """The monitor's memory, child -> Recorded; {} when there is none or it cannot be read (then each child's state
    is recorded once more rather than never)."""
    try:
        doc = json.loads((_dir(state_dir) / _CHILDREN).read_text(encoding="utf-8"))
        if doc.get("version") != _CHILDREN_VERSION:
            return {}
        return {str(name): Recorded(**fields) for name, fields in doc["children"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_recorded(state_dir: Path, recorded: Mapping[str, Recorded]) -> None:
    doc = {"version": _CHILDREN_VERSION, "children": {name: asdict(item) for name, item in recorded.items()}}
    path = _dir(state_dir) / _CHILDREN
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(path, dumps(doc).encode())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def forget(state_dir: Path, keep: Iterable[str], *, dry_run: bool = False) -> list[str]:
    """Drop the inbox and cursors of every parent not in `keep`, and the monitor's memory of every sub-task not in
    it; returns the parents whose inbox went (or, with `dry_run`, would go), sorted. Which names to keep is the
    caller's rule (`mux gc`); under the inbox lock, so no append is lost between the look and the unlink."""
    kept = set(keep)
    folder = _dir(state_dir)
    if not folder.is_dir():
        return []
    with _locked(state_dir):
        owned = {
            path: parent
            for path in folder.iterdir()
            for suffix in _SUFFIXES
            if path.name.endswith(suffix) and not path.name.startswith(".")
            if (parent := path.name.removesuffix(suffix)) not in kept
        }
        if not dry_run:
            for path in owned:
                path.unlink(missing_ok=True)
            recorded = load_recorded(state_dir)
            if any(child not in kept for child in recorded):
                save_recorded(state_dir, {child: item for child, item in recorded.items() if child in kept})
    return sorted({parent for path, parent in owned.items() if path.name.endswith(".jsonl")})
