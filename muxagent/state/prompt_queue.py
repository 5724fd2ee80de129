"""Prompts queued by `mux send --when-idle`, one JSON file per task under `<state dir>/queue/`, in order.

Each entry is `{"id", "text", "queued"}`: the id is what `mux queue --cancel ID` names, so it stays the same
until the prompt is delivered or cancelled. A file written by an earlier mux (a list of plain strings) is still
read: such an entry gets an id made from its text, the same on every read, and keeps it once written back.
Writers and the monitor take a lock on the queue directory, so a prompt is taken off the queue exactly once
even when several `mux` processes queue at the same time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent.errors import StoreError
from muxagent.state import files

SUFFIX = ".json"


@dataclass(frozen=True)
class QueuedPrompt:
    id: str
    text: str
    queued: float  # epoch seconds; 0 for an entry an earlier mux wrote


def _dir(state_dir: Path) -> Path:
    return state_dir / "queue"


def _locked(state_dir: Path) -> AbstractContextManager[Path]:
    # A read-only state dir: `send --when-idle` refuses with one line, nothing queued.
    return files.locked_folder(_dir(state_dir), "the prompt queue")


def _legacy_id(text: str, seen: int) -> str:
    # The same text queued twice gets two ids: `seen` counts the earlier entries with that text.
    return hashlib.sha256(f"{seen}\0{text}".encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _entry(item: Any, legacy_seen: dict[str, int]) -> QueuedPrompt | None:
    if isinstance(item, str):
        seen = legacy_seen.get(item, 0)
        legacy_seen[item] = seen + 1
        return QueuedPrompt(_legacy_id(item, seen), item, 0.0)
    if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("text"), str):
        queued = item.get("queued")
        return QueuedPrompt(item["id"], item["text"], float(queued) if isinstance(queued, int | float) else 0.0)
    return None  # a hand-edited entry mux cannot read: skipped, the others still go out


def _read(path: Path) -> list[QueuedPrompt]:
    try:
        # surrogateescape: a byte that is not UTF-8 must not turn the whole queue into nothing (the next enqueue
        # would write over it); the monitor reports such a prompt when it cannot deliver it.
        items = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return []
    if not isinstance(items, list):
        return []
    legacy_seen: dict[str, int] = {}
    return [entry for item in items if (entry := _entry(item, legacy_seen)) is not None]


def _write(path: Path, entries: list[QueuedPrompt]) -> None:
    if not entries:
        path.unlink(missing_ok=True)
        return
    items = [{"id": e.id, "text": e.text, "queued": e.queued} for e in entries]
    try:
        # ensure_ascii (the default): a surrogate from a byte that is not UTF-8 is written as \udcXX, kept.
        files.atomic_write(path, json.dumps(items).encode())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def _new_id(taken: set[str]) -> str:
    while True:
        candidate = secrets.token_hex(4)
        if candidate not in taken:
            return candidate


def enqueue(state_dir: Path, task: str, text: str) -> tuple[QueuedPrompt, int]:
    """Add a prompt at the end; returns it and how many are now waiting."""
    with _locked(state_dir) as directory:
        path = directory / f"{task}{SUFFIX}"
        entries = _read(path)
        entry = QueuedPrompt(_new_id({e.id for e in entries}), text, time.time())
        _write(path, [*entries, entry])
        return entry, len(entries) + 1


def pop(state_dir: Path, task: str) -> str | None:
    with _locked(state_dir) as directory:
        path = directory / f"{task}{SUFFIX}"
        entries = _read(path)
        if not entries:
            return None
        _write(path, entries[1:])
        return entries[0].text


def pending(state_dir: Path, task: str) -> list[str]:
    return [entry.text for entry in entries(state_dir, task)]


def entries(state_dir: Path, task: str) -> list[QueuedPrompt]:
    return _read(_dir(state_dir) / f"{task}{SUFFIX}")


def queued_tasks(state_dir: Path) -> list[str]:
    """The tasks that have a queue file, by name."""
    try:
        return sorted(path.name.removesuffix(SUFFIX) for path in _dir(state_dir).glob(f"*{SUFFIX}"))
    except OSError:
        return []


def cancel(state_dir: Path, task: str, entry_id: str) -> QueuedPrompt | None:
    """Take the entry off the task's queue; None if it is not there (delivered, cancelled, never queued)."""
    with _locked(state_dir) as directory:
        path = directory / f"{task}{SUFFIX}"
        found = _read(path)
        kept = [e for e in found if e.id != entry_id]
        if len(kept) == len(found):
            return None
        _write(path, kept)
        return next(e for e in found if e.id == entry_id)


def drop(state_dir: Path, task: str) -> None:
    with _locked(state_dir) as directory:
        (directory / f"{task}{SUFFIX}").unlink(missing_ok=True)
