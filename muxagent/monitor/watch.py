"""Filesystem watching (watchdog): learn the moment files change under a set of directories."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any


def in_git_dir(path: str) -> bool:
    return "/.git/" in path or path.endswith("/.git")


class ChangeWatcher:
    """Watches directories under keys; `wait` wakes on any change, `take_changed` says which keys changed."""

    def __init__(self, ignore: Callable[[str], bool] = lambda path: False) -> None:
        from watchdog.observers import Observer

        self._observer = Observer()
        self._ignore = ignore
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._watches: dict[str, Any] = {}
        self._event = threading.Event()

    def watch(self, key: str, directory: Path) -> str | None:
        """Start watching; returns why it could not (permission denied, inotify limit reached), else None."""
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                # Reads (mux's own `git status` among them) are not changes.
                if event.event_type not in ("opened", "closed_no_write") and not watcher._ignore(str(event.src_path)):
                    watcher._mark(key)

        from watchdog.events import (
            DirCreatedEvent,
            DirDeletedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
        )

        # Only changes, asked of inotify itself: every `git status` opens every tracked file, and opens filtered
        # in the handler would still wake the watcher thousands of times per `mux ls`.
        changes = [
            DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
            FileModifiedEvent, FileMovedEvent,
        ]  # fmt: skip
        try:
            self._watches[key] = self._observer.schedule(
                Handler(), str(directory), recursive=True, event_filter=changes
            )
        except OSError as exc:
            return f"{directory}: {exc.strerror or exc}"
        return None

    def unwatch(self, key: str) -> None:
        watch = self._watches.pop(key, None)
        if watch is not None:
            self._observer.unschedule(watch)

    @property
    def keys(self) -> set[str]:
        return set(self._watches)

    def _mark(self, key: str) -> None:
        with self._lock:
            self._changed.add(key)
        self._event.set()

    def take_changed(self) -> set[str]:
        with self._lock:
            changed, self._changed = self._changed, set()
        return changed

    def wait(self, timeout: float) -> bool:
        """True if something changed within timeout; clears the wake-up flag."""
        fired = self._event.wait(timeout)
        self._event.clear()
        return fired

    def __enter__(self) -> ChangeWatcher:
        self._observer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
