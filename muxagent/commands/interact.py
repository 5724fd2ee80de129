"""Reaching a running task: `mux attach`, `send`, `queue`, `peek`, `diff`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import naming, render
from muxagent.commands.context import Context, get_task, load_tasks
from muxagent.commands.report import list_reports, pane_of
from muxagent.errors import AgentBusyError, MuxError, NotTakenError, UnknownTaskError, UsageError
from muxagent.git import diffs, worktrees
from muxagent.model import PaneInfo, State, Task, TaskStatus, utc_iso
from muxagent.state import prompt_queue
from muxagent.status import events

# How long `mux send` waits for a sign that the agent took the text, unless told (`--timeout`).
SEND_TIMEOUT = 10.0
# Between the paste and Enter: the agent's echo of the text must be on screen before the screen is read for
# "before Enter", or the echo itself would pass for the agent taking the text. A program that echoes nothing
# costs this much once.
ECHO_WAIT = 1.0
# Agents that see Enter inside the same read as the paste take it as a newline in the prompt (tmux/client.py).
ENTER_GAP = 0.2
POLL = 0.1
# How much of a queued prompt `mux queue` shows on its line.
PROMPT_WIDTH = 60


def _live_pane(ctx: Context, task: Task) -> PaneInfo:
    pane = pane_of(ctx.tmux_for(task.host).snapshot(), task)
    if pane is None:
        raise MuxError(f"task {task.name!r} has no tmux window (state missing): `mux rm {task.name}` or restart it")
    return pane


def attach(ctx: Context, name: str) -> None:
    task = get_task(ctx, name)
    _live_pane(ctx, task)
    ctx.tmux_for(task.host).attach(task.session, task.window)


def _sendable_pane(ctx: Context, task: Task) -> PaneInfo:
    pane = _live_pane(ctx, task)
    if pane.dead:
        raise MuxError(f"the agent of {task.name!r} has exited (status {pane.dead_status}): nothing to send to")
    if task.host is None and worktrees.checkout_pending(Path(task.worktree)):
        raise MuxError(
            f"{task.name!r} is still checking out its files, its agent not started: `mux send --when-idle` waits for it"
        )
    return pane


def send(ctx: Context, name: str, text: str) -> None:
    """Type the text and press Enter, without looking at the agent's state or waiting for it to react: the
    monitor's delivery, which saw the agent idle in its own snapshot and must not hold up its tick."""
    naming.validate_prompt(text)
    task = get_task(ctx, name)
    ctx.tmux_for(task.host).send_text(_sendable_pane(ctx, task).pane_id, text)


@dataclass(frozen=True)
class Sent:
    """A prompt the agent took, and the sign that told so: `hook: EVENT`, `screen` or `exited`."""

    name: str
    taken_by: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "taken_by": self.taken_by}


def send_confirmed(ctx: Context, name: str, text: str, *, now: bool = False, timeout: float = SEND_TIMEOUT) -> Sent:
    """`mux send`: type the text and press Enter once the agent may take it, then wait for a sign that it did.

    Refused, typing nothing (AgentBusyError), while the agent is working, unless `now`: text typed into a running
    turn is taken by some agents as part of it, by others queued or dropped. A waiting agent takes its answer.
    NotTakenError when no hook fired and the screen did not change within `timeout` of Enter.
    """
    naming.validate_prompt(text)
    if not 0 <= timeout < math.inf:
        raise UsageError("--timeout must be a number of seconds >= 0")
    deadline = time.monotonic() + timeout
    task = get_task(ctx, name)
    pane = _sendable_pane(ctx, task)
    found = _status_once_started(ctx, task, deadline)
    if found.state is State.WORKING and not now:
        raise AgentBusyError(
            f"{name!r} is working ({found.reason}), nothing typed: `mux send --when-idle {name} TEXT` delivers it"
            " when the turn ends (`--now` types it into the running turn)"
        )
    if found.state is State.STARTING:
        raise AgentBusyError(
            f"{name!r} is still starting after {timeout:g}s, nothing typed: `mux send --when-idle {name} TEXT`"
            " delivers it once the agent is idle"
        )
    return _type_and_confirm(ctx, task, pane.pane_id, text, deadline)


def _status_of(ctx: Context, task: Task) -> TaskStatus:
    for item in list_reports(ctx, with_changes=False):
        if item.task.name == task.name:
            return item.status
    raise UnknownTaskError(f"task {task.name!r} was removed")


def _status_once_started(ctx: Context, task: Task, deadline: float) -> TaskStatus:
    """The agent's state, after waiting (until the deadline) for one that has not drawn its first screen yet:
    keys typed before an agent reads its terminal are lost to some (`mux new X; mux send X ...` in a script)."""
    while True:
        found = _status_of(ctx, task)
        if found.state is not State.STARTING or time.monotonic() >= deadline:
            return found
        time.sleep(POLL)


def _screen(ctx: Context, task: Task, target: str) -> str:
    return ctx.tmux_for(task.host).capture([target]).get(target, "")


def _type_and_confirm(ctx: Context, task: Task, target: str, text: str, deadline: float) -> Sent:
    if text:
        empty = _screen(ctx, task, target)
        ctx.tmux_for(task.host).send_text(target, text, enter=False)
        pasted = time.monotonic()
        echo_by = pasted + ECHO_WAIT
        while _screen(ctx, task, target) == empty and time.monotonic() < echo_by:
            time.sleep(POLL / 2)
        time.sleep(max(0.0, pasted + ENTER_GAP - time.monotonic()))
    before = _screen(ctx, task, target)
    entered = time.time()
    ctx.tmux_for(task.host).send_keys(target, "Enter")
    while True:
        taken_by = _sign_of_taking(ctx, task, target, before, entered)
        if taken_by is not None:
            return Sent(task.name, taken_by)
        if time.monotonic() >= deadline:
            raise NotTakenError(
                f"{task.name!r} showed no sign of taking the text (no hook event, no change on screen after Enter):"
                f" it may still be in its input box; see `mux peek {task.name}`"
            )
        time.sleep(POLL)


def _sign_of_taking(ctx: Context, task: Task, target: str, before: str, entered: float) -> str | None:
    hook = next(
        (e for e in events.read_current_run(events.events_path(ctx.store.root, task.name)) if e.ts >= entered),
        None,
    )
    if hook is not None:
        return f"hook: {hook.name}"
    pane = pane_of(ctx.tmux_for(task.host).snapshot(), task)
    if pane is None:
        raise MuxError(f"the window of {task.name!r} went away after the text was typed")
    if pane.dead:
        return "exited"
    return "screen" if _screen(ctx, task, target) != before else None


@dataclass(frozen=True)
class Queued:
    """A prompt waiting in a task's queue for the agent's next idle moment; `position` counts from 1."""

    task: str
    id: str
    text: str
    queued: float
    position: int

    def to_json(self) -> dict[str, object]:
        return {
            "task": self.task,
            "id": self.id,
            "position": self.position,
            "queued": utc_iso(self.queued) if self.queued else None,
            "text": self.text,
        }

    def first_line(self) -> str:
        """The prompt's first line, clipped (… when there is more)."""
        prompt = self.text.strip()
        first = prompt.splitlines()[0] if prompt else ""
        return first[:PROMPT_WIDTH] + ("…" if first != prompt or len(first) > PROMPT_WIDTH else "")

    def text_line(self) -> str:
        """One line for `mux queue`: task, id, place in the queue, age and the prompt's first line."""
        return f"{self.task:<16} {self.id}  #{self.position}  {render.age(self.queued or None):>4}  {self.first_line()}"


def queue_prompt(ctx: Context, name: str, text: str) -> Queued:
    """Queue a prompt for when the agent is next idle (the monitor delivers it: the caller makes sure it runs)."""
    naming.validate_prompt(text)  # refused now, not found undeliverable later by the monitor
    get_task(ctx, name)
    entry, position = prompt_queue.enqueue(ctx.store.root, name, text)
    return Queued(name, entry.id, entry.text, entry.queued, position)


def queued(ctx: Context, name: str | None = None) -> list[Queued]:
    """The prompts queued for one task, or for every task, in the order they will go out."""
    names = [get_task(ctx, name).name] if name is not None else [task.name for task in load_tasks(ctx)]
    return [
        Queued(task, entry.id, entry.text, entry.queued, position)
        for task in names
        for position, entry in enumerate(prompt_queue.entries(ctx.store.root, task), start=1)
    ]


def cancel_queued(ctx: Context, entry_id: str, name: str | None = None) -> Queued:
    """Take a queued prompt off its queue, journaled with its whole text (nothing is lost)."""
    for item in queued(ctx, name):
        if item.id != entry_id:
            continue
        # Journaled first: a failing journal (a full disk) leaves the prompt queued rather than gone.
        ctx.store.journal("cancel-queued", name=item.task, id=entry_id, text=item.text)
        if prompt_queue.cancel(ctx.store.root, item.task, entry_id) is None:
            break  # delivered between the listing and now
        return item
    where = f" for {name}" if name is not None else ""
    raise MuxError(f"no queued prompt {entry_id!r}{where} (delivered or cancelled already?): `mux queue` lists them")


@dataclass(frozen=True)
class Screen:
    """What `mux peek` prints: the agent's screen, escapes removed (it may hold any bytes)."""

    name: str
    screen: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "screen": self.text()}

    def text(self) -> str:
        return render.clean_text(self.screen)


@dataclass(frozen=True)
class Diff:
    """What `mux diff` prints: the task's changes against its base, or only their diffstat."""

    name: str
    diff: str
    stat: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "stat" if self.stat else "diff": self.diff}

    def text(self, terminal: bool) -> str:
        # A terminal gets no escape from a file's content or name (git quotes only C0 controls in names); a pipe
        # gets git's bytes, so `mux diff NAME > fix.patch` still applies.
        return render.clean_text(self.diff) if terminal else self.diff


def peek(ctx: Context, name: str, lines: int | None = None) -> Screen:
    task = get_task(ctx, name)
    pane = _live_pane(ctx, task)
    return Screen(name, ctx.tmux_for(task.host).capture([pane.pane_id], lines=lines).get(pane.pane_id, ""))


def diff(ctx: Context, name: str, stat: bool = False) -> Diff:
    task = get_task(ctx, name)
    if task.host is not None:
        from muxagent.commands import remote

        return Diff(name, remote.diff(task, stat), stat)
    if not Path(task.worktree).is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({task.worktree})")
    return Diff(name, diffs.diff(Path(task.worktree), task.base, stat=stat), stat)
