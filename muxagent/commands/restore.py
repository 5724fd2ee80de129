"""`mux restore`: a removed task recreated from its recovery ref (branch, worktree with its files, window)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from muxagent import config, naming
from muxagent.commands.context import Context, now_iso, worktree_path
from muxagent.commands.create import Undo, agent_env, journal_creation, mark_spawn, open_task, reserve_worktree
from muxagent.errors import MuxError, TaskExistsError, UnknownTaskError
from muxagent.git import recovery_refs, repository
from muxagent.model import AgentProfile, Progress, Task, no_progress
from muxagent.state import intents
from muxagent.state.store import task_from_dict
from muxagent.status import adapters, sessions


@dataclass(frozen=True)
class SavedSubmodule:
    path: str
    ref: str  # holds the submodule's state when the task was removed
    problem: str | None = None  # why it could not be put back, with how to do it by hand; None when it was


@dataclass(frozen=True)
class Restored:
    task: Task
    ref: str
    with_files: bool
    submodules: list[SavedSubmodule]  # the submodules the worktree had initialised


def restore(ctx: Context, name: str, at: str | None = None, progress: Progress = no_progress) -> Restored:
    """Recreate a removed task from its recovery ref: branch, worktree (uncommitted files back) and window."""
    name = naming.validate_name(name)
    refs = recovery_refs.list_recovery_refs(ctx.repo, name)
    if not refs:
        raise UnknownTaskError(f"no recovery ref for {name!r} (refs/mux/recovery/{name}/...)")
    if at is not None:
        # The stamp `mux rm` printed names its ref exactly, even when a later removal in the same second added
        # STAMP-1; a shorter prefix (a day, an hour) picks the latest ref it matches.
        exact = [r for r in refs if r[0].rsplit("/", 1)[-1] == at]
        refs = exact or [r for r in refs if r[0].rsplit("/", 1)[-1].startswith(at)]
        if not refs:
            listing = f"git for-each-ref refs/mux/recovery/{name}"
            raise UnknownTaskError(f"no recovery ref of {name!r} at {at!r}: see `{listing}`")
    ref, commit = refs[-1]
    saved = _recorded(ctx, ref)
    record = saved.task
    tip, snapshot = recovery_refs.recovery_parts(ctx.repo, commit)
    # A task that lived on another host comes back here, from the ref fetched when it was removed: the host (or
    # its copy of the work) may be gone.
    here = record is not None and record.host is None
    worktree = Path(record.worktree) if record is not None and here else worktree_path(ctx, name)
    if record is not None and record.host is not None:
        ctx.notes.append(f"{name} ran on host {record.host}: restored on this machine")
    if worktree.exists():
        worktree = worktree_path(ctx, name)
    profile = _profile_for(ctx, record)
    adapter = adapters.install(profile.hooks, ctx.store.root)
    yolo = record is not None and record.yolo and bool(profile.yolo_args)
    argv = [*profile.command, *adapter.args, *(profile.yolo_args if yolo else ())]
    argv += _resume(ctx, name, saved, profile, worktree).args
    base = record.base if record is not None else None
    fields = intents.RestoreRecord(op="restore", name=name, worktree=str(worktree), base=base, ref=ref)
    intent = intents.intent(ctx.store.root, fields)
    with intent as running, Undo() as undo, ctx.store.transaction() as registry:
        if name in registry:
            raise TaskExistsError(f"task {name!r} exists: `mux rm {name}` it first, or restore under it by hand")
        progress(f"checking out the saved work of {name} into {worktree}")
        port = reserve_worktree(ctx, registry, undo, name, worktree, tip, if_taken="move it away first")
        intents.crash_point("restore:after-worktree")
        if snapshot is not None:
            recovery_refs.apply_snapshot(worktree, snapshot)
        submodules = _restore_submodules(ctx, name, ref.rsplit("/", 1)[-1], worktree, progress)
        env = agent_env(ctx, name, worktree, port, profile, adapter)
        mark_spawn(ctx, name, None, env)
        # From here the agent may write what `ref` does not hold: a rollback must save the worktree again.
        running.fields["agent_started"] = True
        running.save()
        restored = Task(
            name=name, agent=profile.name, command=tuple(argv), base=base or repository.current_branch(ctx.repo.main)
            or tip, branch=naming.branch_for(name), worktree=str(worktree), session="", window="",
            created=record.created if record is not None else now_iso(), port=port,
            prompt=record.prompt if record is not None else None,
            # A restored sub-task is its parent's again (a parent restored after it finds it back the same way).
            parent=record.parent if record is not None else None,
            notify=record.notify if record is not None else (),
            # A losing candidate `mux keep` removed is a member of its group again (`mux compare` shows it).
            group=record.group if record is not None else None,
            # A sandboxed task comes back in its sandbox.
            sandbox=record.sandbox if record is not None else False,
            sandbox_network=record.sandbox_network if record is not None else "full",
            yolo=yolo,
        )  # fmt: skip
        task = open_task(ctx, undo, restored, profile, env)
        intents.crash_point("restore:after-window")
        registry.add(task)
        journal_creation(ctx, undo, task, restored_from=ref)
    return Restored(task, ref, snapshot is not None, submodules)


def _restore_submodules(
    ctx: Context, name: str, stamp: str, worktree: Path, progress: Progress
) -> list[SavedSubmodule]:
    """Each submodule saved with this recovery ref, put back where possible: a failure (its URL unreachable, say)
    does not stop the restore, it says how to finish by hand."""
    found = []
    for saved in recovery_refs.list_submodule_refs(ctx.repo, name):
        if saved.stamp != stamp:
            continue
        path, ref = saved.path, saved.ref
        progress(f"restoring submodule {path}")
        try:
            recovery_refs.restore_submodule(ctx.repo, worktree, path, ref)
        except MuxError as exc:
            by_hand = f"`git submodule update --init {path}`, then `git -C {path} fetch {ctx.repo.common_dir} {ref}`"
            found.append(SavedSubmodule(path, ref, f"{exc}; to do it by hand: {by_hand}"))
        else:
            found.append(SavedSubmodule(path, ref))
    return found


@dataclass(frozen=True)
class SavedRecord:
    """What the journal kept of the task when the recovery ref was written: the task (None when the journal has
    no readable line for the ref) and the agent's conversation ids its hooks recorded, newest first."""

    task: Task | None
    sessions: list[str]


def _recorded(ctx: Context, ref: str) -> SavedRecord:
    for entry in reversed(ctx.store.read_journal()):
        record, conversations = entry.get("record"), entry.get("sessions")
        if entry.get("ref") == ref and isinstance(record, dict):
            with contextlib.suppress(ValueError):
                # Lines written before the ids were kept have none: the profile's resume_args then.
                ids = [s for s in conversations if isinstance(s, str)] if isinstance(conversations, list) else []
                return SavedRecord(task_from_dict(record), ids)
    return SavedRecord(None, [])


def _resume(ctx: Context, name: str, saved: SavedRecord, profile: AgentProfile, worktree: Path) -> sessions.Resume:
    """The task's own conversation, as `mux restart` resumes it: a recorded session only when the agent's records
    place it in the worktree it is restored into (else another task's conversation, or one this directory's agent
    cannot find), and only for the agent that recorded it; else the profile's `resume_args`, and a note."""
    recorded = saved.sessions if saved.task is not None and saved.task.agent == profile.name else []
    found = sessions.resume(profile.hooks, recorded, worktree, {**os.environ, **profile.env}, profile.resume_args)
    if found.note:
        ctx.notes.append(f"{name}: {found.note}")
    return found


def _profile_for(ctx: Context, record: Task | None) -> AgentProfile:
    candidates = [record.agent] if record is not None else []
    candidates.append(ctx.settings.agent)
    for agent in candidates:
        with contextlib.suppress(MuxError):
            return config.resolve_agent(agent, ctx.settings)
    return config.resolve_agent("shell", ctx.settings)
