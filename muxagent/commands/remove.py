"""`mux rm` and `mux clean`: window, worktree, branch and record go, after a recovery ref of what they hold."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from muxagent.commands.context import Context, load_tasks
from muxagent.commands.report import list_reports
from muxagent.errors import MuxError, TmuxError, UnknownTaskError, WouldLoseWorkError
from muxagent.git import object_stores, recovery_refs, repository, safety, worktrees
from muxagent.model import State, Task
from muxagent.state import intents, prompt_queue
from muxagent.state.store import Registry, task_to_dict
from muxagent.status import events, radar

# States in which an agent is busy with something the user cares about: `mux clean` leaves these alone.
ACTIVE_STATES = frozenset({State.STARTING, State.WORKING, State.WAITING, State.UNKNOWN})


@dataclass(frozen=True)
class Removal:
    task: Task
    recovery_ref: str | None

    @property
    def restore_hint(self) -> str | None:
        return restore_hint(self.task.name, self.recovery_ref)


def restore_hint(name: str, ref: str | None) -> str | None:
    if ref is None:
        return None
    return f"mux restore {name} --at {ref.rsplit('/', 1)[-1]}"


def remove(ctx: Context, name: str, force: bool = False, command: str = "rm") -> Removal:
    # The intent lets the next mux finish a removal a crash cut short once it is past its point of no return
    # (muxagent.commands.recovery), and drop one cut short before: that changed nothing. `command` is what the user
    # ran, for the note that tells them.
    with intents.intent(ctx.store.root, intents.RmRecord(op="rm", name=name, command=command)) as intent:

        def removing() -> None:
            intent.fields["removing"] = True
            intent.save()

        with ctx.store.transaction() as registry:
            task = registry.get(name)
            if task is None:
                raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")
            removal = remove_locked(ctx, registry, task, force, on_removing=removing)
            journal_removal(ctx, removal)
        intents.crash_point("rm:after-record")
    return removal


def remove_family(ctx: Context, name: str, force: bool = False) -> list[Removal]:
    """`mux rm --recursive`: the task's sub-tasks, deepest first, then the task, each under its own rules and with
    its own recovery ref. Without `force`, any of them with work that exists nowhere else stops all of them,
    before anything is removed."""
    tasks = load_tasks(ctx)
    top = next((task for task in tasks if task.name == name), None)
    if top is None:
        raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")
    family = [*sub_tasks(tasks, name), top]
    if not force:
        lost = [f"{task.name}: {'; '.join(found)}" for task in family if (found := unsaved_work_of(ctx, task))]
        if lost:
            raise WouldLoseWorkError(
                f"not removing {name!r} and its sub-tasks: work exists nowhere else in {' | '.join(lost)}"
                f" (merge it, or `mux rm --recursive --force {name}` keeps a recovery ref of each); nothing was removed"
            )
    done: list[Removal] = []
    try:
        for task in family:
            done.append(remove(ctx, task.name, force=force))
            intents.crash_point("rm-recursive:after-member")
    except (MuxError, KeyboardInterrupt):
        # A member changed since the check (its agent wrote a file), or Ctrl-C: the ones removed before are said
        # so, with how to bring them back (after Ctrl-C only `interrupted` was said, whatever had gone).
        for removal in done:
            ctx.notes.append(f"removed {removal.task.name} before that" + _hint_note(removal))
        raise
    return done


def _hint_note(removal: Removal) -> str:
    hint = removal.restore_hint
    return f" (restore with `{hint}`)" if hint else ""


def unsaved_work_of(ctx: Context, task: Task) -> list[str]:
    """Phrases naming what removing the task would lose (see git.safety.unsaved_work); [] when nothing."""
    if task.host is not None:
        from muxagent.commands import remote

        return remote.unsaved_work(task)
    worktree = Path(task.worktree)
    return safety.unsaved_work(ctx.repo, worktree if worktree.is_dir() else None, task.branch, task.base)


def sub_tasks(tasks: Iterable[Task], name: str) -> list[Task]:
    """The task's children, their children and so on, each after its own sub-tasks (the order to remove them in),
    siblings in creation order. A loop of parents (a hand-edited registry) is followed once."""
    children: dict[str, list[Task]] = {}
    for task in sorted(tasks, key=lambda t: (t.created, t.name)):
        if task.parent is not None and task.parent != task.name:
            children.setdefault(task.parent, []).append(task)
    found: list[Task] = []
    seen = {name}
    stack: list[tuple[Task, bool]] = [(child, False) for child in reversed(children.get(name, []))]
    seen.update(child.name for child in children.get(name, []))
    while stack:
        task, expanded = stack.pop()
        if expanded:
            found.append(task)
            continue
        stack.append((task, True))
        for child in reversed(children.get(task.name, [])):
            if child.name not in seen:
                seen.add(child.name)
                stack.append((child, False))
    return found


def journal_removal(ctx: Context, removal: Removal) -> None:
    """The journal's `rm` line, written inside the transaction that drops the record, before the registry file:
    written after it, a crash in between and then a lost `tasks.json` brought the removed task back."""
    ctx.store.journal("rm", name=removal.task.name, recovery_ref=removal.recovery_ref)


def remove_locked(
    ctx: Context, registry: Registry, task: Task, force: bool, save: bool = True,
    on_removing: Callable[[], object] | None = None,
) -> Removal:  # fmt: skip
    """Window, worktree, branch, record, in that order, after a recovery ref of everything they hold.

    The ref is written even when nothing would be lost, so every removal can be undone with `mux restore`;
    `save=False` skips it, for callers that know the work is saved already (or that there is none).
    `on_removing` is called at the point of no return: the decision taken, the work saved, nothing removed yet.
    """
    children = sorted(t.name for t in registry.values() if t.parent == task.name and t.name != task.name)
    if children:
        raise MuxError(
            f"task {task.name!r} has sub-tasks: {', '.join(children)} (merge or remove them first, or"
            f" `mux rm --recursive {task.name}` removes them too)"
        )
    if task.host is not None:
        from muxagent.commands import remote

        return Removal(task=task, recovery_ref=remote.remove_locked(ctx, registry, task, force, on_removing))
    worktree = Path(task.worktree)
    present = worktree.is_dir()
    has_branch = repository.branch_exists(ctx.repo, task.branch)
    intents.crash_point("rm:while-checking")
    # Also without a branch (deleted by hand): the worktree's files may still be the only copy.
    lost = unsaved_work_of(ctx, task)
    if lost and not force:
        raise WouldLoseWorkError(
            f"task {task.name!r} has work that exists nowhere else: {'; '.join(lost)}"
            f" (merge it, or `mux rm --force {task.name}` keeps a recovery ref)"
        )
    ref = None
    if save and (lost or has_branch):
        ref = recovery_refs.write_recovery_ref(ctx.repo, task.name, task.branch, worktree if present else None)
        # The conversations its hooks recorded go with the record: the events file goes below, and `mux restore`
        # resumed whatever conversation of the directory was latest instead of the task's own.
        conversations = events.sessions(events.events_path(ctx.store.root, task.name))
        record = task_to_dict(task)
        ctx.store.journal("recovery", name=task.name, ref=ref, lost=lost, record=record, sessions=conversations)
    if on_removing is not None:
        on_removing()
    intents.crash_point("rm:after-recovery-ref")
    window = _own_window(ctx, task)
    if window:
        ctx.tmux.kill_window(window)
        intents.crash_point("rm:after-window")
    if task.sandbox:
        object_stores.fold(ctx.repo, task.name)  # its agent is gone: its commits into the repository's store
    if present or any(wt.path == worktree for wt in worktrees.list_worktrees(ctx.repo)):
        worktrees.remove_worktree(ctx.repo, worktree)
        intents.crash_point("rm:after-worktree")
    if has_branch:
        repository.delete_branch(ctx.repo, task.branch)
        intents.crash_point("rm:after-branch")
    registry.remove(task.name)
    _forget(ctx, task.name)
    return Removal(task=task, recovery_ref=ref)


def _own_window(ctx: Context, task: Task) -> str | None:
    """The task's window in its own session: the recorded id if it still carries the task, else the one that
    does. A recorded id may since belong to another repository's agent or to one of the user's own windows
    (tmux reuses ids after a server restart): killing it by id alone killed another repository's agent."""
    try:
        panes = ctx.tmux.snapshot()
    except TmuxError:
        return task.window or None  # killing it then says why tmux cannot be reached, as before
    mine = [p.window_id for p in panes if p.session == task.session and p.task == task.name]
    return task.window if task.window in mine else next(iter(mine), None)


def _forget(ctx: Context, name: str) -> None:
    """Drop the removed task's queued prompts, hook events and sync marker: none is for a later task of that name."""
    prompt_queue.drop(ctx.store.root, name)
    events.events_path(ctx.store.root, name).unlink(missing_ok=True)
    radar.sync_marker(ctx.store.root, name).unlink(missing_ok=True)


def remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


@dataclass(frozen=True)
class CleanResult:
    removed: list[str]
    kept: dict[str, str]
    restore_hints: dict[str, str] = field(default_factory=dict)


def clean(ctx: Context, dry_run: bool = False) -> CleanResult:
    removed: list[str] = []
    kept: dict[str, str] = {}
    hints: dict[str, str] = {}
    reports = list_reports(ctx)
    # Sub-tasks first: a parent is removable only once its children are gone.
    depth = _depths([item.task for item in reports])
    for item in sorted(reports, key=lambda item: -depth[item.task.name]):
        task = item.task
        if item.status.state in ACTIVE_STATES:
            kept[task.name] = f"agent is {item.status.state.value}"
            continue
        try:
            hint = _clean_one(ctx, task, dry_run)
        except WouldLoseWorkError as exc:
            kept[task.name] = str(exc)
            continue
        except MuxError as exc:
            # One task mux cannot read or remove must not stop the others.
            kept[task.name] = f"cannot be removed: {exc}"
            continue
        if hint:
            hints[task.name] = hint
        removed.append(task.name)
    return CleanResult(removed=removed, kept=kept, restore_hints=hints)


def _depths(tasks: list[Task]) -> dict[str, int]:
    """How many listed ancestors each task has (a loop of parents, from a hand-edited registry, counted once)."""
    parent_of = {task.name: task.parent for task in tasks}
    depths: dict[str, int] = {}
    for task in tasks:
        seen = {task.name}
        above = task.parent
        while above in parent_of and above not in seen:
            seen.add(above)
            above = parent_of[above]
        depths[task.name] = len(seen) - 1
    return depths


def _clean_one(ctx: Context, task: Task, dry_run: bool) -> str | None:
    """Remove one task whose work is all elsewhere (WouldLoseWorkError naming it otherwise); its restore hint."""
    has_branch = repository.branch_exists(ctx.repo, task.branch)
    lost = unsaved_work_of(ctx, task)
    if lost:
        raise WouldLoseWorkError("; ".join(lost) + ("" if has_branch else f" (branch {task.branch} is gone)"))
    return None if dry_run else remove(ctx, task.name, command="clean").restore_hint
