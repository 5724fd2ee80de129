"""Finishing or rolling back the commands a crash interrupted, before the next mux command does anything else.

Each multi-step command (new, restore, rm, merge) records an intent first (muxagent.state.intents); one whose
process died is found here, from the CLI's repo opening, and finished when past its point of no return or rolled
back (its work saved first) when not.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from muxagent import naming
from muxagent.commands.context import Context, now_iso, open_repo, worktree_path
from muxagent.commands.remove import Removal, journal_removal, remove_if_empty, remove_locked, restore_hint
from muxagent.errors import MuxError
from muxagent.git import merging, recovery_refs, repository, safety, worktrees
from muxagent.model import Task
from muxagent.state import intents
from muxagent.state.store import Registry


def open_and_recover(cwd: Path | None = None) -> Context:
    """The repository at `cwd` (default: the working directory), once every command a crash interrupted there is
    finished or rolled back: what every mux command that reads or changes tasks opens."""
    ctx = open_repo(cwd)
    if intents.pending(ctx.store.root):  # one cheap listdir when nothing crashed
        recover(ctx)
    return ctx


def recover(ctx: Context) -> None:
    """Finish or roll back every command a crash interrupted; each outcome becomes a note for the user."""
    with intents.orphaned(ctx.store.root) as found:
        for intent in found:
            record = intent.fields
            op = record["op"]
            if record["op"] == "unreadable":
                ctx.notes.append(f"found an unreadable record of an interrupted mux command: {_kept(intent)}")
                continue
            try:
                note = _finish(ctx, record)
            except MuxError as exc:
                ctx.notes.append(f"could not finish an interrupted `mux {op}`: {exc} (will retry)")
                intent.fields["recovery_failed"] = str(exc)  # for `mux doctor`
                intent.save()
                continue
            except Exception as exc:
                # A record no mux can act on (a name git cannot take, a bug) must not stop every later command:
                # a non-UTF-8 file name once made every command replay an `rm` and die.
                what = type(exc).__name__
                ctx.notes.append(f"could not finish an interrupted `mux {op}` ({what}): {_kept(intent)}")
                continue
            ctx.store.journal("recovered", op=op, intent=intent.fields, outcome=note)
            if note:
                ctx.notes.append(note)
            intent.finish()


def _finish(
    ctx: Context, record: intents.NewRecord | intents.RestoreRecord | intents.RmRecord | intents.MergeRecord
) -> str | None:
    """Finish or roll back one interrupted command; the note that tells the user, if any."""
    if record["op"] == "new":
        return _recover_new(ctx, record)
    if record["op"] == "restore":
        return _recover_restore(ctx, record)
    if record["op"] == "rm":
        return _recover_rm(ctx, record)
    return _recover_merge(ctx, record)


def _recover_new(ctx: Context, fields: intents.NewRecord) -> str | None:
    """Roll back: a task is created whole or not at all; what its worktree holds by then is saved first."""
    return _roll_back_creation(ctx, fields, "new", save=True, saved_in=None)


def _recover_restore(ctx: Context, fields: intents.RestoreRecord) -> str | None:
    """Roll back as `mux new`, saving the worktree again only once its agent may have written to it: before, it
    holds no more than the ref it came from, and a newer ref of it (the branch tip alone, when the crash came
    before the files were put back) made a plain `mux restore` bring the task back without its files."""
    ref = fields.get("ref")
    saved_in = ref if isinstance(ref, str) else None
    return _roll_back_creation(ctx, fields, "restore", save=bool(fields.get("agent_started")), saved_in=saved_in)


def _roll_back_creation(
    ctx: Context, fields: intents.NewRecord | intents.RestoreRecord, op: str, save: bool, saved_in: str | None
) -> str | None:
    """Remove what an interrupted `op` made (window, worktree, branch), first saving it when `save` and it holds
    work; the note names the command as the user typed it, and the recovery ref it came from (`saved_in`)."""
    name = str(fields.get("name"))
    if name in ctx.store.load():
        return None  # the record is the last step: it completed
    # Its `new` line may be in the journal (written just before the record): a rebuild must not bring it back.
    ctx.store.journal("rm", name=name, recovery_ref=None)
    branch = naming.branch_for(name)
    worktree = fields.get("worktree")
    base = fields.get("base")
    task = Task(
        name=name,
        agent="unknown",
        command=(),
        base=base if isinstance(base, str) else (repository.current_branch(ctx.repo.main) or "HEAD"),
        branch=branch,
        worktree=worktree if isinstance(worktree, str) else str(worktree_path(ctx, name)),
        session=naming.session_for(ctx.repo.main),
        window="",
        created=now_iso(),
        port=0,
    )
    window = _find_window(ctx, task)
    has_branch = repository.branch_exists(ctx.repo, branch)
    path = Path(task.worktree)
    present = path.is_dir() or any(w.path == path for w in worktrees.list_worktrees(ctx.repo))
    if not (window or has_branch or present):
        return None
    lost = safety.unsaved_work(ctx.repo, Path(task.worktree) if present else None, branch, task.base) if save else []
    removal = remove_locked(ctx, Registry(), replace(task, window=window), force=True, save=bool(lost))
    remove_if_empty(Path(task.worktree).parent)
    hint = restore_hint(name, removal.recovery_ref)
    saved = f"; its files are saved: `{hint}`" if hint else ""
    if not hint and saved_in is not None:
        saved = f"; its saved work is still in {saved_in}: `mux restore {name}`"
    return f"rolled back an interrupted `mux {op} {name}` (window, worktree and branch removed){saved}"


def _recover_rm(ctx: Context, fields: intents.RmRecord) -> str | None:
    """Roll forward a removal past its point of no return: the user asked for it, and its work was saved (or there
    was none). One interrupted before (still checking for unsaved work) had changed nothing: finishing it would be
    an `rm --force` nobody asked for, deleting a worktree a plain `mux rm` was about to refuse."""
    name = str(fields.get("name"))
    what = f"`mux clean` (removing {name})" if fields.get("command") == "clean" else f"`mux rm {name}`"
    if not fields.get("removing"):
        return f"an interrupted {what} had not removed anything yet: the task is as it was"
    with ctx.store.transaction() as registry:
        task = registry.get(name)
        if task is None:
            # Removed, but a mux before this one may have died before the journal said so.
            ctx.store.journal("rm", name=name, recovery_ref=None)
            return None
        removal = _finish_removal(ctx, registry, task)
        journal_removal(ctx, removal)
    hint = restore_hint(name, removal.recovery_ref)
    return f"finished an interrupted {what}" + (f" (restore with `{hint}`)" if hint else "")


def _recover_merge(ctx: Context, fields: intents.MergeRecord) -> str | None:
    """The base moved to the merge result: finish (remove the task unless --keep). It did not: nothing to undo."""
    name = str(fields.get("name"))
    with contextlib.suppress(MuxError):
        merging.discard_scratch(ctx.repo, ctx.store.root / "scratch" / name)
    target, old, new = fields.get("target"), fields.get("old"), fields.get("new")
    if not isinstance(target, str) or not isinstance(old, str):
        return None  # interrupted during its checks: nothing had changed
    tip = repository.branch_tip(ctx.repo, target)
    # Merged if the target holds the result, even if the user committed on top of it since.
    merged = isinstance(new, str) and tip is not None and (tip == new or repository.is_ancestor(ctx.repo, new, tip))
    if not merged:
        moved = "" if tip == old else f" ({target} has moved on since)"
        return f"an interrupted `mux merge {name}` had not changed {target}{moved}; run it again to merge"
    if fields.get("keep"):
        return f"an interrupted `mux merge {name}` had merged it into {target}"
    with ctx.store.transaction() as registry:
        task = registry.get(name)
        if task is None:
            ctx.store.journal("rm", name=name, recovery_ref=None)  # as in _recover_rm
            return f"an interrupted `mux merge {name}` had merged it into {target} and removed it"
        removal = _finish_removal(ctx, registry, task)
        journal_removal(ctx, removal)
    hint = restore_hint(name, removal.recovery_ref)
    return f"finished an interrupted `mux merge {name}` into {target}: removed the task (restore with `{hint}`)"


def _finish_removal(ctx: Context, registry: Registry, task: Task) -> Removal:
    """Complete a removal a crash cut short, reusing the recovery ref it wrote when nothing was added since.

    Once its worktree is gone, a second ref would hold only the branch tip, and `mux restore` (which takes the
    latest) would bring the task back without the uncommitted files the first ref holds.
    """
    saved = None
    refs = recovery_refs.list_recovery_refs(ctx.repo, task.name)
    tip = repository.branch_tip(ctx.repo, task.branch)
    if refs and not Path(task.worktree).is_dir() and tip is not None:
        ref, commit = refs[-1]
        if recovery_refs.recovery_parts(ctx.repo, commit)[0] == tip:
            saved = ref
    removal = remove_locked(
        ctx, registry, replace(task, window=_find_window(ctx, task)), force=True, save=saved is None
    )
    return removal if saved is None else replace(removal, recovery_ref=saved)


def _kept(intent: intents.Intent[intents.Record]) -> str:
    return f"set it aside as {intent.set_aside()} (read it, then delete it)"


def _find_window(ctx: Context, task: Task) -> str:
    """The task's window by its @mux_task option in this repo's session (ids alone are reused by tmux)."""
    session = naming.session_for(ctx.repo.main)
    try:
        panes = ctx.tmux.snapshot()
    except MuxError:
        return ""
    return next((p.window_id for p in panes if p.session == session and p.task == task.name), "")
