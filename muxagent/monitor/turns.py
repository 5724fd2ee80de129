"""The monitor's checkpoints (git/checkpoints.py): one when a task's turn ends, with the turn's prompt and the
agent's last message as its hooks told them.

A turn ends when a task goes idle or exited, or when a hook says idle again while it was idle (a turn shorter than a
tick). Only then does it cost git processes, a few tens of ms for the task: a quiet
task costs nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from muxagent.commands import context
from muxagent.commands.turns import fill_in_turn, record_turn
from muxagent.errors import MuxError
from muxagent.git.checkpoints import Checkpoint
from muxagent.model import State, TaskReport
from muxagent.status import events

_ENDED = frozenset({State.IDLE, State.EXITED})


@dataclass
class TurnRecorder:
    ctx: context.Context
    seen: dict[str, tuple[State, float | None]] = field(default_factory=dict)
    # The checkpoint taken at the end of each task's turn, until a new turn starts: a hook of that turn that lands
    # after it (Codex's notify, after the screen showed idle) fills in its message rather than being lost.
    taken: dict[str, Checkpoint] = field(default_factory=dict)

    def observe(self, reports: list[TaskReport], hook_events: events.EventsCache) -> list[str]:
        """Take a checkpoint of each task whose turn ended since the last tick; returns their names."""
        settings = context.settings_or_none(self.ctx)
        taken = []
        for item in reports:
            name = item.task.name
            before = self.seen.get(name)
            now = (item.status.state, item.hook_ts)
            self.seen[name] = now
            if now[0] not in _ENDED:
                self.taken.pop(name, None)
            if settings is None or not settings.checkpoints or not _turn_ended(before, now):
                continue
            run = hook_events.read(events.events_path(self.ctx.store.root, name))
            # A checkpoint that cannot be taken now (a worktree gone, git refusing) waits for the next turn's end.
            with contextlib.suppress(MuxError, OSError):
                made = record_turn(self.ctx, item.task, run)
                if made is None and name in self.taken:
                    made = fill_in_turn(self.ctx, item.task, run, self.taken[name])
                if made is not None:
                    self.taken[name] = made
                    taken.append(name)
        for gone in set(self.seen) - {item.task.name for item in reports}:
            del self.seen[gone]
            self.taken.pop(gone, None)
        return taken


def _turn_ended(before: tuple[State, float | None] | None, now: tuple[State, float | None]) -> bool:
    if now[0] not in _ENDED:
        return False
    # First seen idle (a turn over before the monitor's first look, a monitor started again), or come from any other
    # state: a checkpoint that finds nothing changed costs one look and takes none.
    return before is None or before[0] is not now[0] or (now[1] is not None and now[1] != before[1])
