"""Intents of multi-step commands, and the crash points the fault-injection tests kill mux at.

A command that changes several things (worktree, branch, window, registry, the base branch) writes an intent file
before its first side effect and deletes it after its last. While it runs it holds an flock on the intent's lock
file, so another mux can tell a running command from one that died: an intent whose lock it can take was left by
a crashed process, and the next mux finishes or rolls it back (muxagent.commands.recovery).

Intents live in `<git-common-dir>/mux/intents/ID.json` (+ `ID.lock`). Each operation's record is a TypedDict
below; this module knows nothing of what the fields mean, it only stores them atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, Literal, NotRequired, TypedDict, TypeVar, cast

from muxagent.errors import MuxError, StoreError
from muxagent.state import files
from muxagent.state.store import dumps

INTENTS_DIR = "intents"
# Suffix of an intent file no mux could act on, renamed so that `pending` no longer sees it: kept for a human.
SET_ASIDE = ".set-aside"
CRASH_ENV = "MUX_CRASH_AT"
CRASH_STATUS = 99


class _Common(TypedDict):
    pid: NotRequired[int]  # `intent` sets these two
    started: NotRequired[float]
    recovery_failed: NotRequired[str]  # why the last attempt to finish it failed, for `mux doctor`


class NewRecord(_Common):
    op: Literal["new"]
    name: str
    worktree: str
    base: str


class RestoreRecord(_Common):
    op: Literal["restore"]
    name: str
    worktree: str
    base: str | None
    ref: str  # the recovery ref restored from
    agent_started: NotRequired[bool]  # the agent may have written what `ref` does not hold


class RmRecord(_Common):
    op: Literal["rm"]
    name: str
    command: str  # what the user ran: `rm`, or `clean`
    removing: NotRequired[bool]  # past the point of no return: the work is saved, removing has begun


class MergeRecord(_Common):
    op: Literal["merge"]
    name: str
    keep: bool
    # Set once the checks passed, before the first change:
    task: NotRequired[dict[str, object]]
    target: NotRequired[str]
    old: NotRequired[str]  # the target's tip before
    strategy: NotRequired[str]
    new: NotRequired[str]  # the result commit, set before the target moves to it


class UnreadableRecord(_Common):
    """What is read from a file that holds no record of a known operation: torn, not JSON, or of another mux."""

    op: Literal["unreadable"]


Record = NewRecord | RestoreRecord | RmRecord | MergeRecord | UnreadableRecord
OPERATIONS = ("new", "restore", "rm", "merge")
RecordT = TypeVar("RecordT", bound=Record)


def crash_point(step: str) -> None:
    """Die at once, as a power cut would, when MUX_CRASH_AT names this step (tests only; one dict lookup)."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(CRASH_STATUS)


def pending(root: Path) -> bool:
    """Cheap check run by every mux command: is any intent file present at all?"""
    try:
        return any(name.endswith(".json") for name in os.listdir(root / INTENTS_DIR))
    except OSError:
        return False


def names(root: Path) -> set[str]:
    """Tasks some intent (running or interrupted) is about: theirs to finish, not anyone else's to adopt."""
    found = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir(root / INTENTS_DIR):
            if entry.name.endswith(".json"):
                with contextlib.suppress(OSError, ValueError):
                    data = _read_json(Path(entry.path))
                    if isinstance(data, dict) and isinstance(data.get("name"), str):
                        found.add(data["name"])
    return found


def _lock_path(directory: Path, ident: str) -> Path:
    return directory / f"{ident}.lock"


class Intent(Generic[RecordT]):
    """One running multi-step command: its id, its record, and the lock that says it is alive."""

    def __init__(self, directory: Path, ident: str, fields: RecordT, lock: contextlib.ExitStack) -> None:
        self.directory = directory
        self.id = ident
        self.fields: RecordT = fields
        self._lock = lock

    @property
    def path(self) -> Path:
        return self.directory / f"{self.id}.json"

    def save(self) -> None:
        """Write what was set in `fields` (e.g. the commit a merge is about to move its base to) before acting on it."""
        _write_json(self.path, self.fields)

    def finish(self) -> None:
        """The command completed (or was rolled back): forget the intent and release the lock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            _lock_path(self.directory, self.id).unlink()
        self.release()

    def set_aside(self) -> Path:
        """Rename the record out of the way (kept, not deleted) and release it: for a record no mux can act on,
        which would otherwise stop every later command at the same point (a bad byte once made a repo unusable)."""
        kept = self.path.with_name(self.path.name + SET_ASIDE)
        with contextlib.suppress(OSError):
            os.replace(self.path, kept)
        self.finish()
        return kept

    def release(self) -> None:
        self._lock.close()


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    try:
        # Durable: the intent must be on disk before the side effect it announces, as a crash may follow at once.
        files.atomic_write(path, (dumps(data, indent=2) + "\n").encode())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def _read_json(path: Path) -> object:
    """The record in an intent file; bytes that are not UTF-8 read back as the surrogates they were written from."""
    return json.loads(path.read_bytes().decode("utf-8", "surrogateescape"))


@contextmanager
def intent(root: Path, fields: RecordT) -> Iterator[Intent[RecordT]]:
    """Announce the operation `fields` records before acting; finished on success or on a MuxError (the command
    undid its own steps).

    Any other way out (a crash, Ctrl-C, a bug) leaves the intent for the next mux run to finish or roll back.
    """
    directory = root / INTENTS_DIR
    ident = f"{time.time_ns()}-{os.getpid()}-{fields['op']}"
    lock = contextlib.ExitStack()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.enter_context(files.locked(_lock_path(directory, ident)))
    except OSError as exc:
        # Before any side effect: a read-only `.git/mux` refuses the command with one line, changing nothing.
        raise StoreError(f"cannot record the command in {directory}: {exc.strerror}") from exc
    fields["pid"], fields["started"] = os.getpid(), time.time()
    record = Intent(directory, ident, fields, lock)
    try:
        _write_json(record.path, record.fields)
    except StoreError:
        record.finish()
        raise
    try:
        yield record
    except MuxError:
        record.finish()
        raise
    except BaseException:
        record.release()
        raise
    record.finish()


@contextmanager
def orphaned(root: Path) -> Iterator[list[Intent[Record]]]:
    """Intents whose command died, oldest first, each locked by us until the block ends.

    An intent still locked belongs to a running command and is skipped.
    """
    directory = root / INTENTS_DIR
    found: list[Intent[Record]] = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except OSError:
        names = []
    try:
        for name in names:
            ident = name[: -len(".json")]
            lock = contextlib.ExitStack()
            try:
                lock.enter_context(files.locked(_lock_path(directory, ident), wait=False))
            except OSError:
                continue  # unreadable, or locked by the running command it belongs to
            try:
                # Read after locking: the owner may have finished (and deleted it) meanwhile.
                data = _read_json(directory / name)
            except (OSError, ValueError):
                data = None
            if not isinstance(data, dict):
                if not (directory / name).exists():
                    lock.close()
                    with contextlib.suppress(FileNotFoundError):
                        _lock_path(directory, ident).unlink()
                    continue
                data = {"op": "unreadable"}
            elif data.get("op") not in OPERATIONS:
                data = {"op": "unreadable"}
            # Read from disk: the fields are what the operation wrote, unless a human or another program edited them.
            found.append(Intent(directory, ident, cast(Record, data), lock))
        yield found
    finally:
        for item in found:
            item.release()
