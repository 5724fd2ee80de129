"""The monitor's checkpoints (git/checkpoints.py): one when a task's turn ends, with the turn's prompt and the
agent's last message as its hooks told them.

A turn ends when a task goes idle or exited, or when a hook says idle again while it was idle (a turn shorter than a
tick). Only then does it cost git processes, a few tens of ms for the task: a quiet task costs nothing.

The checkpoints are taken on a thread of their own, in the order the turns ended: a monitor started again beside
100 idle tasks looks at each of them once ("first sight"), and doing that in its tick held every hook, delivery and
view update back for seconds (18 s at 100 tasks under the profiler). The monitor types into a task only once that
task's checkpoints are taken (`pending`), so a turn's checkpoint never holds the next turn's edits.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from dataclasses import dataclass, field

from muxagent.commands import context
from muxagent.commands.turns import fill_in_turn, record_turn
from muxagent.errors import MuxError
from muxagent.git.checkpoints import Checkpoint
from muxagent.model import State, Task, TaskReport
from muxagent.status import events

_ENDED = frozenset({State.IDLE, State.EXITED})


@dataclass(frozen=True)
class _Ended:
    task: Task
    run: list[events.HookEvent]


@dataclass(frozen=True)
class _Started:
    """A new turn began (or the task is gone): its last checkpoint is no longer the one a late hook fills in."""

    name: str


@dataclass
class TurnRecorder:
    ctx: context.Context
    seen: dict[str, tuple[State, float | None]] = field(default_factory=dict)
    # The checkpoint taken at the end of each task's turn, until a new turn starts: a hook of that turn that lands
    # after it (Codex's notify, after the screen showed idle) fills in its message rather than being lost. Only the
    # checkpoint thread touches it, in the order the tick saw things happen.
    taken: dict[str, Checkpoint] = field(default_factory=dict)
    _jobs: queue.Queue[_Ended | _Started] = field(default_factory=queue.Queue)
    _pending: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def observe(self, reports: list[TaskReport], hook_events: events.EventsCache) -> list[str]:
        """Ask for a checkpoint of each task whose turn ended since the last tick; returns their names."""
        settings = context.settings_or_none(self.ctx)
        ended = []
        for item in reports:
            name = item.task.name
            before = self.seen.get(name)
            now = (item.status.state, item.hook_ts)
            self.seen[name] = now
            if now[0] not in _ENDED and before is not None and before[0] in _ENDED:
                self._ask(name, _Started(name))
            if settings is None or not settings.checkpoints or not _turn_ended(before, now):
                continue
            # Read here: the events cache belongs to the tick's thread.
            self._ask(name, _Ended(item.task, hook_events.read(events.events_path(self.ctx.store.root, name))))
            ended.append(name)
        for gone in set(self.seen) - {item.task.name for item in reports}:
            del self.seen[gone]
            self._ask(gone, _Started(gone))
        return ended

    def pending(self, name: str | None = None) -> bool:
        """Whether checkpoints asked for `name` (for any task, if None) are still to be taken."""
        with self._lock:
            return bool(self._pending.get(name, 0) if name is not None else self._pending)

    def _ask(self, name: str, job: _Ended | _Started) -> None:
        with self._lock:
            self._pending[name] = self._pending.get(name, 0) + 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mux-checkpoints", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            name = job.name if isinstance(job, _Started) else job.task.name
            try:
                if isinstance(job, _Started):
                    self.taken.pop(name, None)
                else:
                    self._record(job)
            except Exception as exc:  # one task's failure must not end every later checkpoint
                print(f"mux monitor: no checkpoint of {name}: {exc!r}", file=sys.stderr, flush=True)
            with self._lock:
                self._pending[name] -= 1
                if not self._pending[name]:
                    del self._pending[name]

    def _record(self, job: _Ended) -> None:
        name = job.task.name
        # A checkpoint that cannot be taken now (a worktree gone, git refusing) waits for the next turn's end.
        with contextlib.suppress(MuxError, OSError):
            made = record_turn(self.ctx, job.task, job.run)
            if made is None and name in self.taken:
                made = fill_in_turn(self.ctx, job.task, job.run, self.taken[name])
            if made is not None:
                self.taken[name] = made


def _turn_ended(before: tuple[State, float | None] | None, now: tuple[State, float | None]) -> bool:
    if now[0] not in _ENDED:
        return False
    # First seen idle (a turn over before the monitor's first look, a monitor started again), or come from any other
    # state: a checkpoint that finds nothing changed costs one look and takes none.
    return before is None or before[0] is not now[0] or (now[1] is not None and now[1] != before[1])
