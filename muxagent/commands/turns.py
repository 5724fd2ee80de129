"""`mux log`, `mux diff --turn` and `mux undo`: a task's turns as its checkpoints kept them (git/checkpoints.py)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import config, render
from muxagent.commands import interact, report
from muxagent.commands.context import Context, load_tasks, settings_or_none
from muxagent.errors import AgentBusyError, GitError, MuxError, UnknownTaskError
from muxagent.git import checkpoints, merging, recovery_refs, repository
from muxagent.git.checkpoints import Checkpoint
from muxagent.model import State, Task, utc_iso
from muxagent.naming import validate_name
from muxagent.state import intents
from muxagent.status import sessions
from muxagent.status.events import HookEvent

_SUMMARY_SHOWN = 60


@dataclass(frozen=True)
class Turn:
    checkpoint: Checkpoint
    files: int
    added: int
    removed: int
    patch: str | None = None

    def to_json(self) -> dict[str, Any]:
        cp = self.checkpoint
        found: dict[str, Any] = {
            "turn": cp.turn,
            "time": utc_iso(cp.at),
            "commit": cp.commit,
            "tip": cp.tip,
            "prompt": cp.prompt,
            "summary": cp.summary,
            "files": self.files,
            "added_lines": self.added,
            "removed_lines": self.removed,
        }
        if self.patch is not None:
            found["patch"] = self.patch
        return found

    def line(self) -> str:
        cp = self.checkpoint
        summary = next((line.strip() for line in cp.summary.splitlines() if line.strip()), "")
        said = f"  -- {summary[:_SUMMARY_SHOWN]}" if summary and summary != cp.headline else ""
        stat = f"{self.files} file{'s' if self.files != 1 else ''} +{self.added} -{self.removed}"
        return render.clean_line(f"{cp.turn:>3}  {utc_iso(cp.at)}  {cp.headline[:_SUMMARY_SHOWN]}  ({stat}){said}")


@dataclass(frozen=True)
class TurnLog:
    name: str
    turns: list[Turn]

    def to_json(self) -> list[dict[str, Any]]:
        return [turn.to_json() for turn in self.turns]

    def text(self) -> str:
        if not self.turns:
            return f"{self.name} has no checkpoint yet (one is taken when a turn that changed files ends)\n"
        out = []
        for turn in self.turns:
            out.append(turn.line() + "\n")
            if turn.patch is not None:
                out.append(render.clean_text(turn.patch))
        return "".join(out)


def _checkpoints_of(ctx: Context, name: str) -> list[Checkpoint]:
    """A task's checkpoints; a removed task's too (they stay until `mux gc`)."""
    validate_name(name)
    found = checkpoints.list_checkpoints(ctx.repo, name)
    if not found and name not in {task.name for task in load_tasks(ctx)}:
        raise UnknownTaskError(f"no task and no checkpoint named {name!r} (see `mux ls`)")
    return found


def record_turn(ctx: Context, task: Task, run: list[HookEvent], note: str = "") -> Checkpoint | None:
    """A checkpoint of the task's worktree now, its message from the hook events since the last one (or `note`)."""
    worktree = Path(task.worktree)
    if not worktree.is_dir():
        return None
    existing = checkpoints.list_checkpoints(ctx.repo, task.name)
    prompt, summary = _texts(ctx, task, run, existing[-1].at if existing else 0.0)
    if not prompt and not existing:
        prompt = task.prompt or ""
    start = None
    if not existing:
        with contextlib.suppress(GitError):  # a base gone: the first checkpoint has no parent
            start = merging.merge_base(ctx.repo, task.base, task.branch)
    return checkpoints.take(ctx.repo, task.name, worktree, task.branch, start, prompt, note or summary).checkpoint


def fill_in_turn(ctx: Context, task: Task, run: list[HookEvent], taken: Checkpoint) -> Checkpoint | None:
    """The checkpoint just taken at the end of this turn, its message given the agent's last message that a hook
    brought after it (Codex's notify can land after the screen showed the turn over, and a turn that changed
    nothing since takes no new checkpoint to hold it). None when there is nothing to add.

    The hooks looked at are those since the checkpoint before it, as when it was taken: a message that landed
    after the turn ended but before the checkpoint was written (the monitor takes them on a thread of its own, a
    moment later) is still the turn's. OpenCode's `session.idle` carries the turn's texts and came 14 ms after the
    `session.status` idle that ended the turn: counted from the checkpoint's own time, it was lost."""
    earlier = [cp for cp in checkpoints.list_checkpoints(ctx.repo, task.name) if cp.turn < taken.turn]
    prompt, summary = _texts(ctx, task, run, earlier[-1].at if earlier else 0.0)
    if taken.summary or not summary:
        return None
    return checkpoints.reword(ctx.repo, taken, prompt or taken.prompt, summary)


def _texts(ctx: Context, task: Task, run: list[HookEvent], since: float) -> tuple[str, str]:
    """The newest prompt and agent's message the task's conversation's hooks gave since `since`."""
    recent = [event for event in _conversation(ctx, task, run) if event.ts >= since]
    prompt = next((e.prompt for e in reversed(recent) if e.prompt), "")
    return prompt, next((e.message for e in reversed(recent) if e.message), "")


def _conversation(ctx: Context, task: Task, run: list[HookEvent]) -> list[HookEvent]:
    """The run's events less those of the agent's side threads (status/sessions.py, side_thread)."""
    try:
        profile = config.resolve_agent(task.agent, settings_or_none(ctx))
    except MuxError:
        return run
    env = {**os.environ, **profile.env}
    named = {event.session for event in run if event.session}
    side = {session for session in named if sessions.side_thread(profile.hooks, session, env)}
    return [event for event in run if event.session not in side] if side else run


def log(ctx: Context, name: str, patch: bool = False) -> TurnLog:
    turns = []
    for cp in _checkpoints_of(ctx, name):
        files, added, removed = checkpoints.turn_numstat(ctx.repo, cp)
        turns.append(Turn(cp, files, added, removed, checkpoints.turn_diff(ctx.repo, cp) if patch else None))
    return TurnLog(name, turns)


def turn_diff(ctx: Context, name: str, turn: int, stat: bool = False) -> str:
    return checkpoints.turn_diff(ctx.repo, _turn(_checkpoints_of(ctx, name), name, turn), stat=stat)


def _turn(found: list[Checkpoint], name: str, turn: int) -> Checkpoint:
    for cp in found:
        if cp.turn == turn:
            return cp
    have = f"turns {found[0].turn}..{found[-1].turn}" if found else "no checkpoint"
    raise UnknownTaskError(f"{name!r} has no turn {turn} ({have}: see `mux log {name}`)")


@dataclass(frozen=True)
class Undone:
    name: str
    turn: int
    saved: int | None  # the checkpoint holding what the worktree had before, None when the latest one did already
    recovery_ref: str | None  # the agent's commits the branch left, when it moved back
    told: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "turn": self.turn, "saved": self.saved, "recovery_ref": self.recovery_ref}

    def lines(self) -> list[str]:
        out = [f"{self.name}: files as {_when(self.turn)}"]
        if self.saved is not None:
            out.append(f"what was there is turn {self.saved}: `mux undo {self.name} --to {self.saved}` brings it back")
        if self.recovery_ref:
            out.append(f"the branch moved back; the commits it left are in {self.recovery_ref}")
        if not self.told:
            out.append("the agent's conversation is not rewound (`mux undo --tell` tells it which turn it sees)")
        return out


def _when(turn: int) -> str:
    return f"at the end of turn {turn}" if turn else "when the task started"


def undo(ctx: Context, name: str, to: int | None = None, tell: bool = False) -> Undone:
    """Put the task's worktree back as it was at the end of turn `to` (default: the latest turn whose files differ
    from the worktree's now). First a checkpoint of the worktree as it is, so the undo can be undone; the branch
    moves back to that turn's tip, with a recovery ref, when the agent committed since."""
    item = report.report(ctx, validate_name(name))
    task, worktree = item.task, Path(item.task.worktree)
    if item.status.state in (State.WORKING, State.WAITING, State.STARTING):
        raise AgentBusyError(f"{name!r} is {item.status.state.value}: undo waits for its turn to end")
    if not worktree.is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({task.worktree})")
    busy = checkpoints.operation_in_progress(worktree)
    if busy is not None:
        raise MuxError(f"the worktree of {name!r} is in the middle of {busy}: finish or abort it first")
    now = record_turn(ctx, task, [], note="the worktree before mux undo")
    intents.crash_point("undo:after-checkpoint")
    found = checkpoints.list_checkpoints(ctx.repo, name)
    if not found:
        raise MuxError(f"{name!r} has no checkpoint to go back to")
    current = found[-1]
    if to == 0:
        target = _task_start(ctx, found[0], name)
    else:
        target = _turn(found, name, to) if to is not None else _step_back(found, current, name)
    ref = None
    tip = repository.branch_tip(ctx.repo, task.branch)
    if target.tip is not None and tip != target.tip:
        ref = recovery_refs.write_recovery_ref(ctx.repo, name, task.branch, worktree)
        intents.crash_point("undo:after-recovery-ref")
        checkpoints.move_branch(ctx.repo, task.branch, target.tip, tip)
        intents.crash_point("undo:after-branch")
    if target.tip is not None:
        checkpoints.reset_index(worktree, target.tip)
    intents.crash_point("undo:after-index")
    recovery_refs.apply_snapshot(worktree, target.commit, since=current.tree)
    ctx.store.journal("undo", name=name, turn=target.turn, saved=current.commit, recovery_ref=ref)
    told = False
    if tell:
        interact.send(ctx, name, f"mux undo: the files of this worktree are as they were {_when(target.turn)}.")
        told = True
    saved = now.turn if now is not None else None
    return Undone(name, target.turn, saved, ref, told)


def _task_start(ctx: Context, first: Checkpoint, name: str) -> Checkpoint:
    """Turn 0, where the task started: the first checkpoint's parent, its files and its tip alike."""
    if first.parent is None:
        raise MuxError(f"where {name!r} started is not known (its first checkpoint has no parent): try --to 1")
    tree = recovery_refs.tree_of(ctx.repo.main, first.parent)
    return Checkpoint(0, "", first.parent, tree, None, first.parent, 0.0, "", "", ())


def _step_back(found: list[Checkpoint], current: Checkpoint, name: str) -> Checkpoint:
    for cp in reversed(found):
        if cp.tree != current.tree or cp.tip != current.tip:
            return cp
    raise MuxError(f"no earlier turn of {name!r} differs from its worktree now (see `mux log {name}`)")
