"""Agent hook events on disk: one append-only JSON-lines file per task under `<state dir>/events/`.

Hooks append without any lock (one O_APPEND write per event), so an agent never waits on mux; readers take only
the tail of the file, and only what came after the latest `spawn` (the agent's current run) from the launch that
spawn names. Each start of an agent (`new`, `restart`, `restore`) gets its own launch id in its pane's
environment (`MUX_LAUNCH`), and its hooks stamp every event with it: a late hook of the agent a restart replaced,
or of an agent someone started by hand in the pane (no id, or another), must not move the task's state.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from muxagent.model import State

SPAWN = "spawn"
LAUNCH_ENV = "MUX_LAUNCH"
# Enough for a few hundred events: classification only needs the latest few.
TAIL_BYTES = 64 * 1024
# The agents' conversation ids are UUIDs (Claude, Codex) or `ses_...` (OpenCode); anything else is recorded as
# none, so that no payload can put a path, a glob or an option into what `mux restart` reads and runs.
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")


@dataclass(frozen=True)
class HookEvent:
    ts: float
    source: str
    name: str
    state: State | None = None
    detail: str = ""
    launch: str = ""
    session: str = ""  # the agent's conversation id, when its hook names one (status/hooks.py, session_of)
    # The turn's prompt and the agent's last message, when its hook gives them (status/hooks.py, texts_of):
    # what a checkpoint's message holds.
    prompt: str = ""
    message: str = ""


def new_launch() -> str:
    return os.urandom(8).hex()


def events_dir(state_dir: Path) -> Path:
    return state_dir / "events"


# Cached: asked for every task on every monitor tick, where building the Path cost more than the stat of it.
@functools.lru_cache(maxsize=1024)
def events_path(state_dir: Path, task: str) -> Path:
    return events_dir(state_dir) / f"{task}.jsonl"


def append(path: Path, event: HookEvent) -> None:
    record = {"ts": event.ts, "source": event.source, "name": event.name, "detail": event.detail}
    if event.state is not None:
        record["state"] = event.state.value
    if event.launch:
        record["launch"] = event.launch
    if event.session:
        record["session"] = event.session
    if event.prompt:
        record["prompt"] = event.prompt
    if event.message:
        record["message"] = event.message
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _tail(path: Path) -> list[HookEvent]:
    """The events at the end of the file, oldest first by their own timestamps (hooks may land out of order)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return []
    found = [event for line in data.splitlines() if (event := _parse(line)) is not None]
    found.sort(key=lambda e: e.ts)
    return found


def read_current_run(path: Path) -> list[HookEvent]:
    """Events of the current launch since its spawn, oldest first by their own timestamps (hooks may land out of
    order). A spawn an earlier mux wrote names no launch: the events with none, its agent's, are kept then."""
    found = _tail(path)
    for index in range(len(found) - 1, -1, -1):
        if found[index].name == SPAWN:
            launch = found[index].launch
            return [event for event in found[index:] if event.launch == launch]
    return found


class EventsCache:
    """Each events file's current run, read again only when the file's size or mtime moved: the monitor looks at
    every task twice a second, and a quiet task's file (up to TAIL_BYTES of JSON) need not be parsed each time."""

    def __init__(self) -> None:
        self._runs: dict[Path, tuple[tuple[int, int], list[HookEvent]]] = {}

    def read(self, path: Path) -> list[HookEvent]:
        try:
            info = os.stat(path)
        except OSError:
            self._runs.pop(path, None)
            return []
        stamp = (info.st_size, info.st_mtime_ns)
        known = self._runs.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        # An event appended between the stat and the read is in this run and moves the stamp: read again next time.
        run = read_current_run(path)
        self._runs[path] = (stamp, run)
        return run

    def keep(self, paths: set[Path]) -> None:
        """Forget the files of tasks that are gone."""
        for path in set(self._runs) - paths:
            del self._runs[path]


def sessions(path: Path) -> list[str]:
    """The agent's conversation ids the task's hooks recorded, newest first, each once. Only from events of the
    launch their run's spawn names: a late hook of a replaced agent, or of one started by hand in the pane, names
    a conversation that is not the task's."""
    launch: str | None = None  # before the first spawn in the tail: whose run it is cannot be told
    found: list[str] = []
    for event in _tail(path):
        if event.name == SPAWN:
            launch = event.launch
        elif event.session and event.launch == launch:
            found.append(event.session)
    return list(dict.fromkeys(reversed(found)))


def current_launch(path: Path) -> str:
    """The launch id the latest spawn names ("" if none does): what a hook must carry for its event to count."""
    return launch_of(read_current_run(path))


def launch_of(run: Sequence[HookEvent]) -> str:
    """The launch id of a current run as `read_current_run` gives it ("" if its spawn names none)."""
    return run[0].launch if run and run[0].name == SPAWN else ""


def _parse(line: bytes) -> HookEvent | None:
    try:
        raw = json.loads(line)
        state = raw.get("state")
        return HookEvent(
            ts=float(raw["ts"]),
            source=str(raw["source"]),
            name=str(raw["name"]),
            state=State(state) if state else None,
            detail=str(raw.get("detail", "")),
            launch=str(raw.get("launch", "")),
            session=str(raw.get("session", "")),
            prompt=str(raw.get("prompt", "")),
            message=str(raw.get("message", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn or foreign line: skip it, never fail a reader
