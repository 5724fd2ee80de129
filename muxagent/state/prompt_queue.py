"""Prompts queued by `mux send --when-idle`, one JSON file per task under `<state dir>/queue/`, in order.

Writers and the monitor take a lock on the queue directory, so a prompt is taken off the queue exactly once
even when several `mux` processes queue at the same time.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path

from muxagent.errors import StoreError
from muxagent.state import files


def _dir(state_dir: Path) -> Path:
    return state_dir / "queue"


def _locked(state_dir: Path) -> AbstractContextManager[Path]:
    # A read-only state dir: `send --when-idle` refuses with one line, nothing queued.
    return files.locked_folder(_dir(state_dir), "the prompt queue")


def _read(path: Path) -> list[str]:
    try:
        # surrogateescape: a byte that is not UTF-8 must not turn the whole queue into nothing (the next enqueue
        # would write over it); the monitor reports such a prompt when it cannot deliver it.
        items = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return []
    return [str(item) for item in items] if isinstance(items, list) else []


def _write(path: Path, items: list[str]) -> None:
    if not items:
        path.unlink(missing_ok=True)
        return
    try:
        files.atomic_write(path, json.dumps(items).encode())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def enqueue(state_dir: Path, task: str, text: str) -> int:
    """Add a prompt at the end; returns how many are now waiting."""
    with _locked(state_dir) as directory:
        path = directory / f"{task}.json"
        items = [*_read(path), text]
        _write(path, items)
        return len(items)


def pop(state_dir: Path, task: str) -> str | None:
    with _locked(state_dir) as directory:
        path = directory / f"{task}.json"
        items = _read(path)
        if not items:
            return None
        _write(path, items[1:])
        return items[0]


def pending(state_dir: Path, task: str) -> list[str]:
    return _read(_dir(state_dir) / f"{task}.json")


def drop(state_dir: Path, task: str) -> None:
    with _locked(state_dir) as directory:
        (directory / f"{task}.json").unlink(missing_ok=True)
