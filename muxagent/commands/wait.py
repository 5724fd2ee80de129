"""`mux wait`: block until tasks reach a state, for scripts and for agents that delegate to sub-tasks."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from muxagent.commands import context, report
from muxagent.errors import MuxError, UsageError, WaitTimeoutError
from muxagent.model import State, TaskReport

POLL = 0.2


class Target(enum.Enum):
    """What `mux wait --for` waits for; "any": the agent stopped and something (a person, a script) should look."""

    IDLE = "idle"
    WAITING = "waiting"
    EXITED = "exited"
    ANY = "any"

    @property
    def states(self) -> frozenset[State]:
        if self is Target.ANY:
            return frozenset({State.IDLE, State.WAITING, State.EXITED})
        return frozenset({State(self.value)})


# States a task does not leave by itself: waiting for anything else would never end.
FINAL = frozenset({State.EXITED, State.MISSING})


@dataclass(frozen=True)
class WaitResult:
    """The tasks found in the state waited for, in the order they were named (with `--any`, one or more)."""

    target: Target
    reached: tuple[TaskReport, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "for": self.target.value,
            "reached": [
                {"name": r.task.name, "state": r.status.state.value, "reason": r.status.reason} for r in self.reached
            ],
        }


def wait(
    ctx: context.Context, names: Sequence[str], target: Target, timeout: float | None, *, first: bool = False
) -> WaitResult:
    """Block until every named task is in the target state, or with `first` until one of them is."""
    # nan made the deadline unreachable: `mux wait` hung forever instead of timing out.
    if timeout is not None and not 0 <= timeout < math.inf:
        raise UsageError("--timeout must be a number of seconds >= 0 (leave it out to wait as long as it takes)")
    for name in names:
        context.get_task(ctx, name)
    wanted = target.states
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        by_name = {r.task.name: r for r in report.shown_reports(ctx, with_changes=False)}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise MuxError(f"task {missing[0]!r} was removed while waiting")
        current = [by_name[name] for name in names]
        there = tuple(r for r in current if r.status.state in wanted)
        if there and (first or len(there) == len(current)):
            return WaitResult(target, there)
        stuck = [r for r in current if r.status.state in FINAL and r.status.state not in wanted]
        # With `first`, one task that will never get there leaves the others to: only all of them stuck ends it.
        if stuck and (not first or len(stuck) == len(current)):
            found = f"{stuck[0].status.state.value} ({stuck[0].status.reason})"
            raise MuxError(f"task {stuck[0].task.name!r} is {found}: it will not become {target.value}")
        if deadline is not None and time.monotonic() >= deadline:
            states = ", ".join(f"{r.task.name} is {r.status.state.value}" for r in current)
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {target.value}: {states}")
        time.sleep(POLL)
