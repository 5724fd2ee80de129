"""Reaching a running task: `mux attach`, `send`, `peek`, `diff`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import naming, render
from muxagent.commands.context import Context, get_task
from muxagent.commands.report import pane_of
from muxagent.errors import MuxError
from muxagent.git import diffs, worktrees
from muxagent.model import PaneInfo, Task


def _live_pane(ctx: Context, task: Task) -> PaneInfo:
    pane = pane_of(ctx.tmux.snapshot(), task)
    if pane is None:
        raise MuxError(f"task {task.name!r} has no tmux window (state missing): `mux rm {task.name}` or restart it")
    return pane


def attach(ctx: Context, name: str) -> None:
    task = get_task(ctx, name)
    _live_pane(ctx, task)
    ctx.tmux.attach(task.session, task.window)


def send(ctx: Context, name: str, text: str) -> None:
    naming.validate_prompt(text)
    task = get_task(ctx, name)
    pane = _live_pane(ctx, task)
    if pane.dead:
        raise MuxError(f"the agent of {name!r} has exited (status {pane.dead_status}): nothing to send to")
    if worktrees.checkout_pending(Path(task.worktree)):
        raise MuxError(
            f"{name!r} is still checking out its files, its agent not started: `mux send --when-idle` waits for it"
        )
    ctx.tmux.send_text(pane.pane_id, text)


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
    return Screen(name, ctx.tmux.capture([pane.pane_id], lines=lines).get(pane.pane_id, ""))


def diff(ctx: Context, name: str, stat: bool = False) -> Diff:
    task = get_task(ctx, name)
    if not Path(task.worktree).is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({task.worktree})")
    return Diff(name, diffs.diff(Path(task.worktree), task.base, stat=stat), stat)
