"""`mux wait`: block until tasks reach a state, for scripts and for agents that delegate to sub-tasks."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from muxagent.commands import context, report
from muxagent.errors import MuxError, UsageError, WaitTimeoutError
from muxagent.model import State, TaskReport

POLL = 0.2
# "any": the agent has stopped and something (a person, a script) should look at it.
TARGETS: dict[str, frozenset[State]] = {
    "idle": frozenset({State.IDLE}),
    "waiting": frozenset({State.WAITING}),
    "exited": frozenset({State.EXITED}),
    "any": frozenset({State.IDLE, State.WAITING, State.EXITED}),
}
# States a task does not leave by itself: waiting for anything else would never end.
FINAL = frozenset({State.EXITED, State.MISSING})


def wait(ctx: context.Context, names: Sequence[str], target: str, timeout: float | None) -> list[TaskReport]:
    if target not in TARGETS:
        raise UsageError(f"--for takes one of {', '.join(TARGETS)}, not {target!r}")
    # nan made the deadline unreachable: `mux wait` hung forever instead of timing out.
    if timeout is not None and not 0 <= timeout < math.inf:
        raise UsageError("--timeout must be a number of seconds >= 0 (leave it out to wait as long as it takes)")
    for name in names:
        context.get_task(ctx, name)
    wanted = TARGETS[target]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        by_name = {r.task.name: r for r in report.list_reports(ctx, with_changes=False)}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise MuxError(f"task {missing[0]!r} was removed while waiting")
        current = [by_name[name] for name in names]
        if all(r.status.state in wanted for r in current):
            return current
        for r in current:
            if r.status.state in FINAL and r.status.state not in wanted:
                raise MuxError(
                    f"task {r.task.name!r} is {r.status.state.value} ({r.status.reason}): it will not become {target}"
                )
        if deadline is not None and time.monotonic() >= deadline:
            states = ", ".join(f"{r.task.name} is {r.status.state.value}" for r in current)
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {target}: {states}")
        time.sleep(POLL)
