"""`mux sync`: the base's new commits brought into a task's branch, in its worktree; conflicts left to its agent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from muxagent import render
from muxagent.commands.context import Context, get_task, load_tasks
from muxagent.commands.interact import send
from muxagent.commands.report import list_reports
from muxagent.errors import MuxError
from muxagent.git import diffs, merging, recovery_refs, repository, runner, worktree_status, worktrees
from muxagent.model import Progress, State, Task, no_progress
from muxagent.state import files
from muxagent.state.store import task_to_dict
from muxagent.status import radar


@dataclass(frozen=True)
class SyncResult:
    task: Task
    up_to_date: bool
    conflicts: list[str]
    recovery_ref: str | None
    asked: bool = False


def sync(
    ctx: Context, name: str, rebase: bool = False, ask: bool = False, progress: Progress = no_progress
) -> SyncResult:
    """Bring the base's new commits into the task's branch, inside the task's worktree.

    A conflict stays in the task's worktree for its agent (never in the user's checkout); the task shows as
    `waiting` with reason "conflict" until it is resolved.
    """
    task = get_task(ctx, name)
    worktree = Path(task.worktree)
    if not worktree.is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({task.worktree}): nothing to sync")
    worktrees.require_checkout(worktree)
    head, branch = repository.head_of(worktree)
    if branch != task.branch or head is None:
        raise MuxError(f"the worktree of {name!r} is not on its branch '{task.branch}': check it out there first")
    busy = repository.in_progress(worktree)
    if busy is not None:
        raise MuxError(f"the worktree of {name!r} is in the middle of a {busy}: resolve or abort it first")
    onto = repository.resolve_commit(ctx.repo, task.base)
    marker = radar.sync_marker(ctx.store.root, name)
    if repository.is_ancestor(ctx.repo, onto, head):
        marker.unlink(missing_ok=True)
        return SyncResult(task, True, [], None)
    if rebase and worktree_status.has_changes(worktree):
        raise MuxError(
            f"the worktree of {name!r} has uncommitted changes: `mux sync --rebase` needs it clean"
            f" (commit them, or sync with a merge: `mux sync {name}`)"
        )
    # A rebase rewrites the task's commits and a conflict rewrites its files: keep the state before.
    ctx.store.require_writable()  # else a read-only `.git/mux` refused only after the ref was written
    progress(f"saving a recovery ref of {name}")
    ref = recovery_refs.write_recovery_ref(ctx.repo, name, task.branch, worktree)
    ctx.store.journal("recovery", name=name, ref=ref, lost=["sync"], record=task_to_dict(task))
    progress(f"rebasing {name} onto {task.base}" if rebase else f"merging {task.base} into {name}")
    paths = merging.sync_in_worktree(worktree, onto, task.base, rebase)
    ctx.store.journal("sync", name=name, onto=onto, rebase=rebase, conflicts=paths)
    if not paths:
        marker.unlink(missing_ok=True)
        return SyncResult(task, False, [], ref)
    marker.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(marker, (onto + "\n").encode())
    asked = False
    if ask:
        verb = "rebase" if rebase else "merge"
        send(ctx, name, _resolve_prompt(task.base, verb, paths))
        asked = True
    return SyncResult(task, False, paths, ref, asked)


def _resolve_prompt(base: str, verb: str, paths: list[str]) -> str:
    # File names are the branch's to choose: one holding ESC [201~ ended the paste and typed the rest as keys; one
    # that is not UTF-8 is written as git quotes it (\351): a prompt must be text, and the agent's git shows it so.
    listing = "\n".join(f"- {render.clean_line(runner.quote_path(p))}" for p in paths)
    finish = "git rebase --continue" if verb == "rebase" else "git commit --no-edit"
    return (
        f"The {verb} of {base} into this branch stopped on conflicts in these files:\n{listing}\n"
        f"Resolve the conflict markers in each, `git add` them, then run `{finish}`."
    )


# A task in one of these states has its agent at work or a question open: its files must not change under it.
_BUSY = (State.WORKING, State.WAITING, State.STARTING)


@dataclass(frozen=True)
class SyncAllResult:
    """What `mux sync --all` did (or, with --dry-run, would do) to each task behind its base."""

    dry_run: bool
    synced: tuple[str, ...]  # brought up to date (or would be)
    conflicting: tuple[tuple[str, tuple[str, ...]], ...]  # (task, paths): left untouched
    skipped: tuple[tuple[str, str], ...]  # (task, why): left untouched

    @property
    def empty(self) -> bool:
        """No task was behind its base."""
        return not (self.synced or self.conflicting or self.skipped)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "synced": list(self.synced),
            "conflicting": [{"name": name, "paths": list(paths)} for name, paths in self.conflicting],
            "skipped": [{"name": name, "reason": why} for name, why in self.skipped],
        }

    def text(self) -> str:
        verb = "would sync" if self.dry_run else "synced"
        lines = [f"{verb} {name}" for name in self.synced]
        for name, paths in self.conflicting:
            shown = ", ".join(render.clean_line(runner.quote_path(p)) for p in paths)
            lines.append(f"not synced {name}: conflicts in {shown} (`mux sync {name} --ask` hands them to its agent)")
        lines += [f"not synced {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines or ["every task is up to date with its base"]) + "\n"


def sync_all(
    ctx: Context,
    base: str | None = None,
    exclude: str | None = None,
    dry_run: bool = False,
    progress: Progress = no_progress,
) -> SyncAllResult:
    """Sync every idle task behind its base (only those on `base`, if given) whose merge is clean.

    Each is pre-checked with merge-tree on its branch tip and against its uncommitted files, so no worktree is
    ever left mid-merge; a task whose agent is working, waiting or starting is never touched.
    """
    states = {item.task.name: item.status.state for item in list_reports(ctx, with_changes=False)}
    synced: list[str] = []
    conflicting: list[tuple[str, tuple[str, ...]]] = []
    skipped: list[tuple[str, str]] = []
    for task in sorted(load_tasks(ctx), key=lambda t: t.name):
        if task.name == exclude or (base is not None and task.base != base):
            continue
        progress(f"checking {task.name}")
        check = _check_sync(ctx, task, states.get(task.name, State.UNKNOWN))
        if not check.behind:
            continue
        if check.conflicts:
            conflicting.append((task.name, check.conflicts))
        elif check.reason is not None:
            skipped.append((task.name, check.reason))
        elif dry_run:
            synced.append(task.name)
        else:
            result = sync(ctx, task.name, progress=progress)
            if result.conflicts:  # its branch moved since the check: never leave it mid-merge
                merging.abort_merge(Path(task.worktree))
                conflicting.append((task.name, tuple(result.conflicts)))
            else:
                synced.append(task.name)
    return SyncAllResult(dry_run, tuple(synced), tuple(conflicting), tuple(skipped))


class _SyncCheck(NamedTuple):
    behind: bool
    reason: str | None = None  # why it is left alone
    conflicts: tuple[str, ...] = ()


def _check_sync(ctx: Context, task: Task, state: State) -> _SyncCheck:
    """Whether the task is behind its base and, if so, whether a sync in its worktree would go through cleanly."""
    worktree = Path(task.worktree)
    tip = repository.branch_tip(ctx.repo, task.branch)
    onto = repository.branch_tip(ctx.repo, task.base)
    if tip is None or onto is None or repository.is_ancestor(ctx.repo, onto, tip):
        return _SyncCheck(False)
    if state in _BUSY:
        return _SyncCheck(True, f"its agent is {state.value}")
    if not worktree.is_dir():
        return _SyncCheck(True, "its worktree is gone")
    head, branch = repository.head_of(worktree)
    if branch != task.branch or head != tip:
        return _SyncCheck(True, f"its worktree is not on its branch '{task.branch}'")
    busy = repository.in_progress(worktree)
    if busy is not None:
        return _SyncCheck(True, f"its worktree is in the middle of a {busy}")
    tree, paths = merging.merge_trees(ctx.repo, tip, onto)
    if paths:
        return _SyncCheck(True, conflicts=tuple(paths))
    # `git merge` refuses to start over a local edit on a path it writes; say so rather than try.
    touched = diffs.changed_paths(ctx.repo, tip, tree)
    local = sorted(worktree_status.dirty_paths(worktree) & set(touched)) if touched else []
    if local:
        return _SyncCheck(True, f"it has uncommitted changes where the merge writes: {', '.join(local[:5])}")
    return _SyncCheck(True)
