"""The task registry on disk, in `<git-common-dir>/mux/`: `tasks.json`, its `lock`, and `journal.jsonl`.

Every change goes through `Store.transaction()`: an exclusive `flock` held for the whole read-modify-write, so
concurrent `mux` processes (including agents running `mux` in their panes) never lose an update. The new file
is written beside the old one and renamed over it, so a reader without the lock always sees a whole file.
`journal.jsonl` is append-only: the record a human reads after an accident, and the source a lost or corrupt
registry is rebuilt from.

Other per-task state (hook events, queued prompts) belongs in its own files under the same root, so frequent
writers such as agent hooks never wait on this lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from muxagent.errors import StoreError
from muxagent.model import Task
from muxagent.state import files, view_file

FORMAT_VERSION = 1
TASKS_FILE = "tasks.json"
JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = "lock"

# Every journal line starts with this (compact separators, "ts" first): it lets the reader recover an entry
# that was appended to a line left unfinished by a crash. It cannot occur inside a JSON string value, where
# the quotes would be escaped.
_ENTRY_START = '{"ts":'

# A lone surrogate is how Python holds a byte of a name that is not UTF-8 (git output and argv are decoded with
# surrogateescape): `caf\xe9.txt` is 'caf\udce9.txt'. Raw, it cannot be encoded, and `mux rm --force` died
# writing its journal line; as a JSON escape it keeps the file valid UTF-8 and reads back as the same bytes.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Roots whose lock this thread holds: flock locks belong to the open file, so a nested transaction in the same
# thread would wait for itself forever. Other threads simply wait their turn, as other processes do.
_held = threading.local()


class _CorruptError(Exception):
    """tasks.json exists but does not hold a registry this mux can read."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(doc: object, **options: Any) -> str:
    """JSON for mux's state files: readable UTF-8 for every text, lossless for names that are bytes."""
    text = json.dumps(doc, ensure_ascii=False, **options)
    return _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def task_to_dict(task: Task) -> dict[str, object]:
    """The JSON form of a task, as stored in tasks.json and in journal entries (tuples become lists)."""
    out: dict[str, object] = {}
    for f in fields(Task):
        value = getattr(task, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def task_from_dict(d: Mapping[str, object]) -> Task:
    """Read a task back from its JSON form. Unknown keys are ignored (a later mux may add some); ValueError if
    a required field is missing or has the wrong type."""
    kwargs: dict[str, object] = {}
    for f in fields(Task):
        if f.name not in d:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"task record has no {f.name!r}")
            continue
        kwargs[f.name] = _field_value(f.name, str(f.type), d[f.name])
    task: Task = cast(Any, Task)(**kwargs)
    return task


_SCALARS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _field_value(name: str, annotation: str, value: object) -> object:
    # Driven by Task's annotations so that a field added to Task is read back without touching this module.
    if annotation.startswith("tuple["):
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ValueError(f"task field {name!r} should be a list of strings")
    base = annotation.removesuffix(" | None")
    if value is None and base != annotation:
        return None
    expected = _SCALARS.get(base)
    if expected is None:
        return value
    if not isinstance(value, expected) or (isinstance(value, bool) and base != "bool"):
        raise ValueError(f"task field {name!r} should be {annotation}, not {type(value).__name__}")
    return value


class Registry:
    """The tasks by name, in creation order. Changes reach the disk only inside `Store.transaction()`."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self.modified = False

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    def values(self) -> list[Task]:
        return list(self._tasks.values())

    def add(self, task: Task) -> None:
        if task.name in self._tasks:
            raise KeyError(task.name)
        self._tasks[task.name] = task
        self.modified = True

    def replace(self, task: Task) -> None:
        # A name that is gone stays gone: a `mux restart` racing a `mux rm` must not resurrect the task.
        if task.name not in self._tasks:
            raise KeyError(task.name)
        self._tasks[task.name] = task
        self.modified = True

    def remove(self, name: str) -> Task | None:
        task = self._tasks.pop(name, None)
        if task is not None:
            self.modified = True
        return task

    def _put(self, task: Task) -> None:
        self._tasks[task.name] = task


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._rebuilt: str | None = None
        self._generation: str | None = None
        self._stamp: view_file.Stamp | None = None
        # The last file parsed, by its stamp: the monitor loads the registry every tick, and parsing 100 records
        # again was a tenth of its CPU while nothing changed.
        self._parsed: tuple[view_file.Stamp, Registry, str | None] | None = None

    @property
    def tasks_path(self) -> Path:
        return self.root / TASKS_FILE

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL_FILE

    @property
    def rebuilt(self) -> str | None:
        """After `load()` or `transaction()`: one line saying the registry had to be rebuilt, else None."""
        return self._rebuilt

    @property
    def generation(self) -> str | None:
        """After `load()` or `transaction()`: the generation of the registry read or written last (a new one with
        every write), None for a file that has none (written by an older mux, or by hand). The live view names the
        generation it was computed from (state/view.py): a view of any other registry is not shown."""
        return self._generation

    @property
    def stamp(self) -> view_file.Stamp | None:
        """After `load()` or `transaction()`: the size, mtime_ns and inode of the tasks.json read or written last
        (view_file.stamp_of), None without one. A registry edited by hand keeps its generation, not these: the live
        view names both, and a view of another file is not shown (ls showed a hand-edited record a second late)."""
        return self._stamp

    def load(self) -> Registry:
        """A read-only snapshot, without the lock: the atomic rename means the file is always whole."""
        self._rebuilt = None
        try:
            registry = self._read()
        except _CorruptError:
            return self._repair()
        if registry is None:
            return self._repair() if self._journal_has_tasks() else Registry()
        return registry

    @contextmanager
    def transaction(self) -> Iterator[Registry]:
        """Hold the lock, yield the registry, write it back if modified; on an exception write nothing."""
        self._rebuilt = None
        self._mkdir()
        key = os.path.realpath(self.root)
        held: set[str] = _held.__dict__.setdefault("roots", set())
        if key in held:
            raise RuntimeError(f"nested transaction on {self.root}: it would wait for its own lock")
        with contextlib.ExitStack() as lock:
            try:
                lock.enter_context(files.locked(self.root / LOCK_FILE))
            except OSError as exc:
                raise StoreError(f"cannot open {self.root / LOCK_FILE}: {exc.strerror}") from exc
            held.add(key)
            try:
                registry = self._load_locked()
                yield registry
                if registry.modified:
                    self._write(registry)
            finally:
                held.discard(key)

    def journal(self, action: str, **fields: object) -> None:
        """Append one line {"ts", "pid", "action", **fields}; values JSON cannot hold are written as str()."""
        entry: dict[str, object] = {"ts": _iso(_now()), "pid": os.getpid(), "action": action}
        clash = entry.keys() & fields.keys()
        if clash:
            raise ValueError(f"journal fields {sorted(clash)} are reserved")
        entry.update(fields)
        line = (dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        if self._append(line) != len(line):
            raise StoreError(f"short write to {self.journal_path} (disk full?)")

    def require_writable(self) -> None:
        """StoreError now if the journal cannot be appended to (a read-only `.git/mux`), for a command whose first
        side effect comes before its first journal line: it then changes nothing."""
        self._append(b"")

    def _append(self, data: bytes) -> int:
        self._mkdir()
        try:
            # O_APPEND and a single write: lines from concurrent processes never interleave.
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot append to {self.journal_path}: {exc.strerror}") from exc

    def read_journal(self) -> list[dict[str, object]]:
        """All entries in order; lines that are not a JSON object (a crash mid-write) are skipped."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read {self.journal_path}: {exc.strerror}") from exc
        entries: list[dict[str, object]] = []
        for raw in data.split(b"\n"):
            # A byte that is not UTF-8 (a line another tool wrote) comes back as the surrogate it stands for.
            line = raw.decode("utf-8", "surrogateescape")
            entry = _parse_entry(line)
            if entry is None:
                # An entry appended after a torn line shares that line: keep the entry, drop the fragment.
                start = line.rfind(_ENTRY_START)
                entry = _parse_entry(line[start:]) if start > 0 else None
            if entry is not None:
                entries.append(entry)
        return entries

    # -- internals -------------------------------------------------------------------------------------------

    def _mkdir(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.root}: {exc.strerror}") from exc

    def _read(self) -> Registry | None:
        """The registry in tasks.json, or None if there is no such file."""
        self._generation = None
        self._stamp = None
        try:
            with self.tasks_path.open("rb") as file:
                stamp = view_file.stamp_of(os.fstat(file.fileno()))
                data = None if self._parsed is not None and self._parsed[0] == stamp else file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.tasks_path}: {exc.strerror}") from exc
        if data is not None:
            registry, generation = _parse_registry(data, self.tasks_path)
            self._parsed = (stamp, registry, generation)
        assert self._parsed is not None
        _stamp, parsed, self._generation = self._parsed
        self._stamp = stamp
        registry = Registry()
        registry._tasks = dict(parsed._tasks)  # a copy: the caller may change its registry
        return registry

    def _repair(self) -> Registry:
        # Rebuilding renames and rewrites files, so it happens under the lock; a process that finds the damage
        # already repaired by another simply reads the repaired file.
        with self.transaction() as registry:
            pass
        registry.modified = False
        return registry

    def _load_locked(self) -> Registry:
        kept: str | None = None
        try:
            registry = self._read()
        except _CorruptError as exc:
            kept = self._quarantine()
            problem = f"corrupt ({exc})"
            self._rebuilt = f"task registry was corrupt; rebuilt from the journal (old file kept as {kept})"
        else:
            if registry is not None:
                return registry
            if not self._journal_has_tasks():
                return Registry()
            problem = "missing"
            self._rebuilt = "task registry was missing; rebuilt from the journal"
        registry = self._replay()
        # Written back even if empty, so the next command does not rebuild again.
        registry.modified = True
        self.journal("rebuild", problem=problem, kept=kept, tasks=list(registry))
        return registry

    def _quarantine(self) -> str:
        stamp = _now().strftime("%Y%m%dT%H%M%SZ")
        name = f"{TASKS_FILE}.corrupt-{stamp}"
        suffix = 1
        # Under the lock, so checking then renaming cannot race another mux.
        while (self.root / name).exists():
            suffix += 1
            name = f"{TASKS_FILE}.corrupt-{stamp}-{suffix}"
        try:
            os.rename(self.tasks_path, self.root / name)
        except OSError as exc:
            raise StoreError(f"{self.tasks_path} is corrupt and cannot be moved aside: {exc.strerror}") from exc
        return name

    def _journal_has_tasks(self) -> bool:
        return any(isinstance(entry.get("task"), dict) for entry in self.read_journal())

    def _replay(self) -> Registry:
        """Replay the journal in order: "rm" (field `name`) removes; any other entry carrying a whole `task`
        ("new", and any later action that records a task's new form) sets that task."""
        registry = Registry()
        for entry in self.read_journal():
            if entry.get("action") == "rm":
                name = entry.get("name")
                if isinstance(name, str):
                    registry._tasks.pop(name, None)
                continue
            record = entry.get("task")
            if isinstance(record, dict):
                try:
                    registry._put(task_from_dict(record))
                except ValueError:
                    continue
        return registry

    def _write(self, registry: Registry) -> None:
        # Random rather than counted: a registry rebuilt from the journal starts no count, and must still differ
        # from every registry a view was made of.
        generation = os.urandom(8).hex()
        payload = {
            "version": FORMAT_VERSION,
            "generation": generation,
            "tasks": {name: task_to_dict(task) for name, task in registry._tasks.items()},
        }
        data = (dumps(payload, indent=2) + "\n").encode()
        try:
            # Durable: without fsync a power loss after the rename can leave an empty tasks.json.
            files.atomic_write(self.tasks_path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {self.tasks_path}: {exc.strerror}") from exc
        self._generation = generation
        # Under the lock: no other mux replaces the file in between (a hand edit may: then no view covers it).
        try:
            info = os.stat(self.tasks_path)
        except OSError:
            self._stamp = None
        else:
            self._stamp = view_file.stamp_of(info)


def _parse_entry(line: str) -> dict[str, object] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _parse_registry(data: bytes, path: Path) -> tuple[Registry, str | None]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _CorruptError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise _CorruptError("not a JSON object")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _CorruptError("no valid version")
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path} was written by a newer mux (format {version}, this one knows {FORMAT_VERSION}): upgrade mux"
        )
    tasks = doc.get("tasks")
    if not isinstance(tasks, dict):
        raise _CorruptError("no tasks table")
    registry = Registry()
    for name, record in tasks.items():
        if not isinstance(record, dict) or record.get("name", name) != name:
            raise _CorruptError(f"bad record for task {name!r}")
        try:
            registry._put(task_from_dict({**record, "name": name}))
        except ValueError as exc:
            raise _CorruptError(str(exc)) from exc
    generation = doc.get("generation")
    return registry, generation if isinstance(generation, str) else None


# ---------------------------------------------------------------------------------------------- caches


def load_cache(path: Path, version: int) -> dict[str, Any]:
    """A cache file's document; {} when it is missing, unreadable or of another version."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and doc.get("version") == version else {}


def save_cache(path: Path, version: int, doc: Mapping[str, Any]) -> None:
    """Write a cache file whole or not at all; failures are ignored, the next run recomputes.

    No lock, last writer wins: every entry names the inputs it was derived from, so an entry another writer
    replaced is only a miss. The temp file + rename keeps readers from seeing half a file.
    """
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(path, json.dumps({**doc, "version": version}).encode(), durable=False)
