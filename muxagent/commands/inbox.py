"""`mux inbox`: what a parent task's sub-tasks reached, read without being consumed (state/inbox.py keeps it)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from muxagent import render
from muxagent.commands.context import Context, get_task
from muxagent.errors import StoreError, UsageError
from muxagent.model import Task
from muxagent.state import inbox
from muxagent.state.inbox import Entry

# How often `mux inbox --follow` looks for new entries: the monitor records a child's state within a tick (0.5 s).
FOLLOW_POLL = 0.25


@dataclass(frozen=True)
class InboxView:
    """Entries of one parent's inbox, and which of them no earlier `mux inbox` had shown."""

    name: str
    entries: tuple[Entry, ...]
    read_before: int  # the read cursor before this read: entries above it were unread

    def to_json(self) -> list[dict[str, object]]:
        return [{**entry.to_json(), "unread": entry.id > self.read_before} for entry in self.entries]

    def text(self) -> str:
        return "\n".join(self.lines()) or f"nothing in the inbox of {self.name}"

    def lines(self) -> list[str]:
        """`* #3 2026-12-01T10:00:00Z tests-fix idle: +12 -3 in 2 files, 1 commit ahead (hook: Stop)`, `*` if unread."""
        return [self._line(entry) for entry in self.entries]

    def _line(self, entry: Entry) -> str:
        mark = "*" if entry.id > self.read_before else " "
        state = entry.state + (f" (status {entry.exit_status})" if entry.exit_status is not None else "")
        reason = f" ({entry.reason})" if entry.reason else ""
        line = f"{mark} #{entry.id} {entry.time} {entry.child} {state}: {entry.changes_summary()}{reason}"
        return render.clean_line(line)  # the file may have been edited by hand: nothing unclean reaches a terminal


def resolve_task(ctx: Context, name: str | None) -> Task:
    """The task named, else the one whose pane this runs in (MUX_TASK); refused when neither is there."""
    name = name or os.environ.get("MUX_TASK")
    if not name:
        raise UsageError("give a task name (`mux inbox NAME`), or run it in a task's pane")
    return get_task(ctx, name)


def read(ctx: Context, name: str | None, since: int = 0) -> InboxView:
    """The entries after `since`, which then count as read."""
    return _read(ctx, resolve_task(ctx, name), since)


def _read(ctx: Context, parent: Task, since: int) -> InboxView:
    root = ctx.store.root
    before = inbox.read_upto(root, parent.name)
    # Entries from before the task was created were left by a removed task of the same name: kept, not shown.
    found = tuple(inbox.entries(root, parent.name, since=since, from_time=parent.created))
    if found:
        try:
            inbox.mark_read(root, parent.name, found[-1].id)
        except StoreError as exc:
            # A read-only or full state dir: the entries are shown all the same and stay unread, with one line
            # saying why (it refused to show them at all, the moment they were wanted most).
            note = f"{exc}: the entries shown stay unread"
            if note not in ctx.notes:
                ctx.notes.append(note)
    return InboxView(parent.name, found, before)


def follow(ctx: Context, name: str | None, since: int = 0, poll: float = FOLLOW_POLL) -> Iterator[InboxView]:
    """The entries after `since`, then each new batch as the monitor adds it, until the caller stops (Ctrl-C)."""
    parent = resolve_task(ctx, name)
    view = _read(ctx, parent, since)
    yield view
    last = view.entries[-1].id if view.entries else since
    while True:
        time.sleep(poll)
        view = _read(ctx, parent, last)
        if view.entries:
            last = view.entries[-1].id
            yield view
