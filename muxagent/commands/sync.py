"""`mux sync`: the base's new commits brought into a task's branch, in its worktree; conflicts left to its agent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from muxagent import render
from muxagent.commands.context import Context, get_task
from muxagent.commands.interact import send
from muxagent.errors import MuxError
from muxagent.git import merging, recovery_refs, repository, runner, worktree_status, worktrees
from muxagent.model import Progress, Task, no_progress
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
