"""The monitor's half of the live view (state/view.py): every task's report kept current from what changed.

Each tick the monitor already has every task's state (one batched tmux read, hook events read only from the files
that grew). What costs git processes, a task's changes, is read again only for a task whose worktree's files moved
(watchdog), whose branch or base moved (the refs' stat data, then one `git for-each-ref`), that is new, or whose
worktree cannot be watched; the conflict radar runs again only when some task's changes did. So a tick of 100 quiet
tasks starts no git process at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from muxagent import render
from muxagent.commands import context, report
from muxagent.errors import MuxError
from muxagent.git import repository
from muxagent.model import Task, TaskReport
from muxagent.state import view
from muxagent.status import changes, radar

# What a task's Work was read from: the task itself (a task removed and restored under its name is another one),
# then its branch's and its base's tips.
_Inputs = tuple[str, str, str | None, str | None]


@dataclass
class ViewKeeper:
    ctx: context.Context
    works: dict[str, changes.Work] = field(default_factory=dict)
    inputs: dict[str, _Inputs] = field(default_factory=dict)
    changes_at: dict[str, float] = field(default_factory=dict)
    conflicts: radar.Found = field(default_factory=dict)
    refs: tuple[tuple[str, int, int], ...] | None = None
    tips: dict[str, str] | None = None
    generation: int = 0

    def publish(
        self,
        reports: list[TaskReport],
        touched: Collection[str],
        last_change: Mapping[str, float],
        looked_at: float,
        epoch: str,
    ) -> None:
        """Publish every task's report: `reports` (states, from the tick that began to look at `looked_at`) with
        the changes, conflicts and unread inbox entries kept here; `touched`: the tasks whose worktree's files moved
        (or cannot be watched)."""
        present = report.with_files([item.task for item in reports])
        self._update_works(present, touched, looked_at)
        registry, stamp = self.ctx.store.generation, self.ctx.store.stamp
        if registry is None or stamp is None:
            return  # a registry without a generation (an older mux wrote it): no reader would take the view
        shown = [
            replace(item, last_change=last_change.get(item.task.name))  # this tick's, not monitor.json's
            for item in report.with_work(self.ctx, reports, self.works, self.conflicts)
        ]
        entries = {
            item.task.name: view.entry_of(item, row, looked_at, self.changes_at.get(item.task.name))
            for item, row in zip(shown, render.rows(shown), strict=True)
        }
        self.generation += 1
        # A state dir that refuses the file (full, read-only) must not cost the tick its deliveries: the view left
        # there ages past view.MAX_AGE within a second, and readers do the full work.
        with contextlib.suppress(OSError):
            view.publish(
                self.ctx.store.root,
                view.View(self.generation, registry, stamp, looked_at, os.getpid(), entries, epoch),
            )

    def _update_works(self, present: list[Task], touched: Collection[str], looked_at: float) -> None:
        # The stamp before the tips: a ref that moves in between is in these tips, and moves the next stamp too.
        stamp = repository.refs_stamp(self.ctx.repo)
        if stamp != self.refs or self.tips is None:
            try:
                self.tips = repository.ref_tips(self.ctx.repo)
            except MuxError:
                return  # the changes stay as they were; the next tick tries again
            self.refs = stamp
        tips = self.tips
        stale = [
            task
            for task in present
            if task.name in touched or self.inputs.get(task.name) != _inputs_of(task, tips)
        ]  # fmt: skip
        if stale:
            fresh = changes.read_many(self.ctx.repo, self.ctx.store.root, stale, tips, prune=False)
            for task in stale:
                self.changes_at[task.name] = looked_at
                if task.name in fresh:
                    self.works[task.name] = fresh[task.name]
                    self.inputs[task.name] = _inputs_of(task, tips)
                else:  # git could not read it (no branch, a lock held): asked again next tick
                    self.works.pop(task.name, None)
                    self.inputs.pop(task.name, None)
        names = {task.name for task in present}
        gone = (self.works.keys() | self.inputs.keys() | self.changes_at.keys()) - names
        for name in gone:
            self.works.pop(name, None)
            self.inputs.pop(name, None)
            self.changes_at.pop(name, None)
        if stale or gone:
            self.conflicts = report.conflicts_of(self.ctx, present, self.works)


def _inputs_of(task: Task, tips: Mapping[str, str]) -> _Inputs:
    return (task.created, task.worktree, *changes.inputs(task, tips))
