"""The monitor's look at the tasks on other hosts, so that `mux ls` and the status line answer them from the live
view as fast as this machine's (issue 17: every `ls` asking each host itself cost 463 ms for 2 hosts x 10 tasks,
5.25x the 88 ms of 20 local tasks).

Each host has a thread of its own that asks it every EVERY seconds, one batched round trip (commands/remote.py):
a host that hangs until its ssh_timeout holds up neither the tick nor the other hosts. The tick shows a host's
rows only from a look that covers what the user did: one begun after the last command that changed something
ended (the view's epoch, as for this machine's tasks), with every remote task the registry names on it, less than
STALE_AFTER ago. Any other task is left out of the view, and whoever reads it asks that host itself: never a row
older than the last command that touched the task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from muxagent.commands import context, report
from muxagent.model import State, Task, TaskReport, TaskStatus
from muxagent.state import view

EVERY = 2.0
# A look this old is not shown: a host that stopped answering (a black hole waits out its ssh_timeout each look) is
# asked by `ls` itself, which says so within that timeout.
STALE_AFTER = 5.0
# A look unanswered this long makes the host's tasks `unknown`, rather than their last rows shown until it fails:
# a black-holed host with the default 5 s ssh_timeout showed its tasks `idle` for those 5 s. A look of 50
# tasks takes well under a second here.
SLOW_AFTER = 3.0


@dataclass(frozen=True)
class Look:
    reports: dict[str, TaskReport]
    began: float  # epoch seconds
    epoch: str  # the view's epoch when it began: what commands it saw the effects of


class HostWatch:
    """Asks each host with tasks for their reports on a thread of its own; `look` hands the tick what is current."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._wanted: dict[str, list[Task]] = {}
        self._looks: dict[str, Look] = {}
        self._wakes: dict[str, threading.Event] = {}
        self._asking: dict[str, float] = {}  # since when each host is being asked (epoch seconds)

    def look(self, tasks: Sequence[Task], epoch: str, now: float) -> list[TaskReport]:
        """The reports of those of `tasks` (each on another host) that may be shown now, the view's epoch being
        `epoch`; a host whose look is not current is asked again at once."""
        wanted: dict[str, list[Task]] = {}
        for task in tasks:
            wanted.setdefault(task.host or "", []).append(task)
        shown: list[TaskReport] = []
        with self._lock:
            self._wanted = wanted
            for host, mine in wanted.items():
                if host not in self._wakes:
                    self._start(host)
                found = self._looks.get(host)
                # A task not in the look, or another one under its name (a registry edited by hand: no epoch).
                if found is None or found.epoch != epoch or any(_of(found, task) is None for task in mine):
                    self._wakes[host].set()
                    continue
                asking = now - self._asking.get(host, now)
                if asking > SLOW_AFTER:
                    reason = f"host {host} has not answered for {asking:.0f} s"
                    shown.extend(TaskReport(task, TaskStatus(State.UNKNOWN, reason), None) for task in mine)
                elif now - found.began < STALE_AFTER:
                    shown.extend(found.reports[task.name] for task in mine)
            for host in set(self._looks) - set(wanted):
                del self._looks[host]
        return shown

    def _start(self, host: str) -> None:
        wake = self._wakes[host] = threading.Event()
        threading.Thread(target=self._run, args=(host, wake), name=f"mux-host-{host}", daemon=True).start()

    def _run(self, host: str, wake: threading.Event) -> None:
        while True:
            with self._lock:
                mine = self._wanted.get(host)
                if not mine:  # no task left on it: the thread ends, a later task starts another
                    del self._wakes[host]
                    return
            began = time.time()
            epoch = view.epoch(self.ctx.store.root)  # before asking: a command that ends meanwhile renews it
            with self._lock:
                self._asking[host] = began
            try:
                found = report.remote_reports(self.ctx, mine, with_changes=True)
            except Exception as exc:  # the thread must outlive one bad look: it is the only one asking this host
                print(f"mux monitor: internal error asking host {host}: {type(exc).__name__}: {exc}", flush=True)
                found = {}
            with self._lock:
                self._looks[host] = Look(found, began, epoch)
                del self._asking[host]
            wake.wait(max(0.0, EVERY - (time.time() - began)))
            wake.clear()


def _of(found: Look, task: Task) -> TaskReport | None:
    item = found.reports.get(task.name)
    return item if item is not None and item.task == task else None
