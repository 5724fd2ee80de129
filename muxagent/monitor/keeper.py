"""The monitor's half of the live view (state/view.py): every task's report kept current from what changed.

Each tick the monitor already has every task's state (one batched tmux read, hook events read only from the files
that grew), and publishes it at once. What costs git processes, a task's changes, is read again only for a task
whose worktree's files moved (watchdog), whose branch or base moved (the refs' stat data, then one `git
for-each-ref`), that is new, or whose worktree cannot be watched; the conflict radar runs again only when some
task's changes did. So a tick of 100 quiet tasks starts no git process at all. That git work runs on a thread of its
own (WorktreeReader), a few worktrees at a time: a tick publishes the changes that are ready and never waits on git
(ticks that read every worktree an edit touched left the view seconds old at 50 busy tasks, and every `ls` then did
the full work: 4975 ms).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

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
# Worktrees read at once (each by its own git processes): more only queue on two cores.
BATCH = 8
# How long a tick waits for the reads and the radar it asked for before it publishes what is ready: one edited
# worktree is read within it (its counts in the same tick as its `last_change`), a hundred are not, and wait.
BUDGET = 0.2


@dataclass(frozen=True)
class Request:
    task: Task
    inputs: _Inputs
    asked_at: float  # when the tick that asked began to look: the files read are at least that recent


@dataclass(frozen=True)
class Read:
    request: Request
    work: changes.Work | None  # None: git could not read it (no branch, a lock held)


class WorktreeReader:
    """Reads the tasks' changes and runs the conflict radar on a thread of its own, BATCH worktrees at a time, the
    oldest request first; the monitor's tick asks and takes, and never waits."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()  # set while there is nothing to read or run
        self._idle.set()
        self._queue: dict[str, Request] = {}
        self._tips: Mapping[str, str] = {}
        self._radar: tuple[int, list[Task], dict[str, changes.Work]] | None = None
        self._reads: list[Read] = []
        self._reading: set[str] = set()
        self._conflicts: tuple[int, radar.Found] | None = None
        self._thread: threading.Thread | None = None

    def ask(self, requests: list[Request], tips: Mapping[str, str]) -> None:
        """Read these tasks' changes: in the order first asked (a task asked again keeps its place, so that one an
        agent edits every tick is not put last every tick), with the newest request of each."""
        with self._lock:
            for request in requests:
                self._queue[request.task.name] = request
            self._tips = tips
        self._start()

    def ask_radar(self, version: int, present: list[Task], works: Mapping[str, changes.Work]) -> None:
        """Run the radar over `works` (numbered `version`); a newer request replaces one not yet begun."""
        with self._lock:
            self._radar = (version, list(present), dict(works))
        self._start()

    def take(self) -> tuple[list[Read], tuple[int, radar.Found] | None]:
        """The reads finished since the last take, and the newest radar result with the version it was asked for."""
        with self._lock:
            reads, self._reads = self._reads, []
            conflicts, self._conflicts = self._conflicts, None
        return reads, conflicts

    def reading(self) -> set[str]:
        """The tasks whose changes are being read now."""
        with self._lock:
            return set(self._reading)

    def wait(self, timeout: float) -> None:
        """Wait until everything asked is done, at most `timeout` seconds."""
        self._idle.wait(max(0.0, timeout))

    def _start(self) -> None:
        self._idle.clear()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mux-worktrees", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._steps():
                pass
            with self._lock:
                if not self._queue and self._radar is None and not self._wake.is_set():
                    self._idle.set()

    def _steps(self) -> bool:
        try:
            return self._step()
        except Exception as exc:  # the thread must outlive one bad step: it is the only one reading changes
            print(f"mux monitor: internal error reading changes: {type(exc).__name__}: {exc}", flush=True)
            with self._lock:
                self._reading = set()
            return True

    def _step(self) -> bool:
        """Do one batch of reads, else the radar; False when there is nothing to do."""
        with self._lock:
            batch = list(self._queue.values())[:BATCH]
            for request in batch:
                del self._queue[request.task.name]
            self._reading = {request.task.name for request in batch}
            tips = self._tips
            job = None if batch else self._radar
            if job is not None:
                self._radar = None
        if batch:
            fresh = self._read(batch, tips)
            with self._lock:
                self._reads.extend(Read(request, fresh.get(request.task.name)) for request in batch)
                self._reading = set()
            return True
        if job is not None:
            version, present, works = job
            try:
                found = report.conflicts_of(self.ctx, present, works)
            except Exception:  # a radar that failed leaves the conflicts shown as they were
                return True
            with self._lock:
                self._conflicts = (version, found)
            return True
        return False

    def _read(self, batch: list[Request], tips: Mapping[str, str]) -> dict[str, changes.Work]:
        try:
            return changes.read_many(self.ctx.repo, self.ctx.store.root, [r.task for r in batch], tips, prune=False)
        except Exception:  # whatever it was, these tasks are asked again next tick, as when git could not read one
            return {}


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
    # Tasks to read again, since the tick that first saw them stale: a read asked before that is not enough.
    stale_since: dict[str, float] = field(default_factory=dict)
    works_version: int = 0  # counts the changes to `works`: a radar result older than the one shown is not taken
    conflicts_version: int = 0
    reader: WorktreeReader = field(init=False)

    def __post_init__(self) -> None:
        self.reader = WorktreeReader(self.ctx)

    def publish(
        self,
        reports: list[TaskReport],
        present: list[Task],
        touched: Collection[str],
        last_change: Mapping[str, float],
        looked_at: float,
        epoch: str,
    ) -> None:
        """Publish every task's report: `reports` (states, from the tick that began to look at `looked_at`) with
        the changes, conflicts and unread inbox entries kept here, as far as they are read; `present`: the tasks
        whose changes can be read (report.statuses); `touched`: those whose worktree's files moved (or cannot be
        watched)."""
        self._update_works(present, touched, looked_at)
        registry, stamp = self.ctx.store.generation, self.ctx.store.stamp
        if registry is None or stamp is None:
            return  # a registry without a generation (an older mux wrote it): no reader would take the view
        shown = report.with_work(self.ctx, reports, self.works, self.conflicts, last_change)
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
        names = {task.name for task in present}
        deadline = time.monotonic() + BUDGET
        # The stamp before the tips: a ref that moves in between is in these tips, and moves the next stamp too.
        stamp = repository.refs_stamp(self.ctx.repo)
        if stamp != self.refs or self.tips is None:
            try:
                self.tips = repository.ref_tips(self.ctx.repo)
            except MuxError:
                self.tips = None  # the changes stay as they were; the next tick tries again
            else:
                self.refs = stamp
        if self.tips is not None:
            self._ask(present, touched, self.tips, looked_at)
        self.reader.wait(deadline - time.monotonic())
        changed = self._take_reads(names)
        gone = (self.works.keys() | self.inputs.keys() | self.changes_at.keys() | self.stale_since.keys()) - names
        for name in gone:
            self.works.pop(name, None)
            self.inputs.pop(name, None)
            self.changes_at.pop(name, None)
            self.stale_since.pop(name, None)
        if changed or gone:
            self.works_version += 1
            self.reader.ask_radar(self.works_version, present, self.works)
            self.reader.wait(deadline - time.monotonic())
            if self._take_reads(names):  # more reads came in meanwhile: the radar runs again over them
                self.works_version += 1
                self.reader.ask_radar(self.works_version, present, self.works)

    def _take_reads(self, names: set[str]) -> bool:
        """Take in what the reader finished; whether any task's Work changed."""
        reads, conflicts = self.reader.take()
        if conflicts is not None and conflicts[0] > self.conflicts_version:
            self.conflicts_version, self.conflicts = conflicts
        changed = False
        for read in reads:
            name = read.request.task.name
            if name not in names:
                continue  # removed meanwhile
            changed = True
            self.changes_at[name] = read.request.asked_at
            if read.work is not None:
                self.works[name] = read.work
                self.inputs[name] = read.request.inputs
            else:  # git could not read it (no branch, a lock held): asked again
                self.works.pop(name, None)
                self.inputs.pop(name, None)
            if self.stale_since.get(name, float("inf")) <= read.request.asked_at:
                del self.stale_since[name]
        return changed

    def _ask(self, present: list[Task], touched: Collection[str], tips: Mapping[str, str], looked_at: float) -> None:
        """Ask the reader for the tasks whose files moved, whose tips moved, or that were never read."""
        for task in present:
            if task.name in touched:  # files moved since: a read begun before now does not see them all
                self.stale_since[task.name] = looked_at
            elif self.inputs.get(task.name) != _inputs_of(task, tips):
                self.stale_since.setdefault(task.name, looked_at)
        reading = self.reader.reading()
        requests = [
            Request(task, _inputs_of(task, tips), looked_at)
            for task in present
            if task.name in self.stale_since and task.name not in reading
        ]
        if requests:
            self.reader.ask(requests, tips)


def _inputs_of(task: Task, tips: Mapping[str, str]) -> _Inputs:
    return (task.created, task.worktree, *changes.inputs(task, tips))
