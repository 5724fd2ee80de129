"""`mux merge --resolve`: a conflicting merge prepared in the task's own worktree and handed to its agent.

The base is merged into the task's branch in the task's worktree (never in the main checkout), a recovery ref of
the task as it was is written first, and a marker (radar.resolve_marker) says what to undo. Once the agent is idle
with the merge committed, `mux merge NAME` completes as usual; `mux merge NAME --abort-resolve` puts the task back
exactly as it was, the attempt kept in a recovery ref of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from muxagent import render
from muxagent.commands.compare import check_task
from muxagent.commands.context import Context, get_task
from muxagent.commands.interact import send
from muxagent.commands.merge import MergeRequest, MergeResult, merge
from muxagent.commands.report import list_reports
from muxagent.errors import MergeConflictError, MuxError
from muxagent.git import merging, recovery_refs, repository, runner
from muxagent.model import Progress, State, Task, no_progress
from muxagent.state import files
from muxagent.state.store import task_to_dict
from muxagent.status import radar

# Enough of each side's story for the agent; a long-lived branch must not make a prompt of thousands of lines.
_MESSAGES = 20


@dataclass(frozen=True)
class Resolving:
    """`mux merge NAME --resolve` on a conflict: the merge is left in the task's worktree for its agent."""

    task: Task
    target: str
    conflicts: list[str]
    recovery_ref: str


def merge_or_resolve(
    ctx: Context, request: MergeRequest, resolve: bool, progress: Progress = no_progress
) -> MergeResult | Resolving:
    """`mux merge`: once a resolve attempt is finished, or with none under way, merge; on a conflict with
    `resolve`, hand the merge to the task's agent instead of refusing."""
    task = get_task(ctx, request.name)
    if radar.read_resolve_marker(ctx.store.root, task) is not None:
        _require_resolved(ctx, task)
    try:
        result = merge(ctx, request, progress)
    except MergeConflictError as exc:
        if not resolve:
            raise
        state = _agent_state(ctx, task)
        if state is not State.IDLE:
            # Its files would change under a working agent, or no agent would ever take the prompt.
            raise MergeConflictError(
                f"{exc}; not handed to its agent, which is {state.value} (--resolve needs it idle)", exc.paths
            ) from None
        started = _start(ctx, task, request.into or task.base, exc.paths, progress)
        if started.conflicts:
            return started
        result = merge(ctx, request, progress)  # its branch moved since the check: the merge went through
    radar.resolve_marker(ctx.store.root, task.name).unlink(missing_ok=True)
    return result


def _agent_state(ctx: Context, task: Task) -> State:
    states = {item.task.name: item.status.state for item in list_reports(ctx, with_changes=False)}
    return states.get(task.name, State.UNKNOWN)


def _require_resolved(ctx: Context, task: Task) -> None:
    state = _agent_state(ctx, task)
    if state in (State.WORKING, State.WAITING, State.STARTING):
        raise MuxError(
            f"{task.name!r} is still resolving its merge (its agent is {state.value}): `mux wait"
            f" {task.name}` and merge again, or give up with `mux merge {task.name} --abort-resolve`"
        )
    worktree = Path(task.worktree)
    if worktree.is_dir() and repository.in_progress(worktree) is not None:
        left = merging.unmerged_paths(worktree)
        what = f"{len(left)} file(s) still conflict" if left else "the merge is not committed yet"
        raise MergeConflictError(
            f"{task.name!r} is resolving its merge and {what}: let its agent finish (`git commit` there), or give"
            f" up with `mux merge {task.name} --abort-resolve`; nothing was changed",
            left,
        )
    _require_check_passes(ctx, task)


def _require_check_passes(ctx: Context, task: Task) -> None:
    """The repository's `check`, once trusted, run in the resolved worktree: a resolution that breaks the tests is
    no resolution, and its merge would land them broken in the base."""
    settings = ctx.settings
    if settings.check is None or "check" in settings.ignored_keys:
        return
    run = check_task(ctx, task, settings.check)
    if run is None or (run.status == 0 and not run.timed_out):
        return
    how = f"timed out after {run.seconds:.0f}s" if run.timed_out else f"exited {run.status}"
    last = render.clean_line(run.last_lines(1)[0]) if run.last_lines(1) else ""
    raise MuxError(
        f"{task.name!r} resolved its merge but the check ({settings.check}) {how}{': ' + last if last else ''}:"
        f" let its agent fix it, or give up with `mux merge {task.name} --abort-resolve`; nothing was changed"
    )


def _start(ctx: Context, task: Task, target: str, paths: list[str], progress: Progress) -> Resolving:
    worktree = Path(task.worktree)
    head = repository.branch_tip(ctx.repo, task.branch)
    onto = repository.branch_tip(ctx.repo, target)
    if not worktree.is_dir() or head is None or onto is None:
        raise MergeConflictError(f"{task.name!r} conflicts with {target} and has no worktree to resolve it in", paths)
    ctx.store.require_writable()
    progress(f"saving a recovery ref of {task.name}")
    ref = recovery_refs.write_recovery_ref(ctx.repo, task.name, task.branch, worktree)
    ctx.store.journal("recovery", name=task.name, ref=ref, lost=["resolve"], record=task_to_dict(task))
    marker = radar.resolve_marker(ctx.store.root, task.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    # Written before the merge starts: a mux killed after it still knows what to undo.
    doc = {"created": task.created, "target": target, "head": head, "ref": ref}
    files.atomic_write(marker, json.dumps(doc).encode())
    progress(f"merging {target} into {task.name} in its worktree")
    try:
        left = merging.sync_in_worktree(worktree, onto, target, rebase=False)
    except MuxError:  # git refused to start (a local edit in the way) and changed nothing
        marker.unlink(missing_ok=True)
        raise
    ctx.store.journal("resolve", name=task.name, onto=onto, conflicts=left)
    try:
        if left:
            send(ctx, task.name, _prompt(ctx, target, head, onto, left))
    except MuxError:
        _put_back(ctx, task, doc)
        raise
    return Resolving(task, target, left, ref)


def _prompt(ctx: Context, target: str, head: str, onto: str, paths: list[str]) -> str:
    since = merging.merge_base(ctx.repo, head, onto) or onto

    def story(tip: str) -> str:
        # Commit messages and file names are the agents' to write: one line each, control bytes out.
        messages = merging.commit_messages(ctx.repo, since, tip, _MESSAGES)
        lines = [render.clean_line(" ".join(text.split())) for text in messages]
        return "\n".join(f"- {line}" for line in lines) or "- (none)"

    listing = "\n".join(f"- {render.clean_line(runner.quote_path(p))}" for p in paths)
    return (
        f"mux merged {target} into this branch to bring it home, and these files conflict:\n{listing}\n"
        f"Why this branch changed (its commits since the two diverged):\n{story(head)}\n"
        f"Why {target} changed:\n{story(onto)}\n"
        "Resolve the conflict markers in each file keeping both intents, `git add` them, then run"
        " `git commit --no-edit`."
    )


def abort_resolve(ctx: Context, name: str) -> str:
    """Put the task back exactly as it was before `mux merge --resolve`; returns the recovery ref of the attempt."""
    task = get_task(ctx, name)
    doc = radar.read_resolve_marker(ctx.store.root, task)
    if doc is None:
        raise MuxError(f"{name!r} is not resolving a merge: nothing to abort")
    worktree = Path(task.worktree)
    if not worktree.is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({task.worktree}): nothing to put back")
    if repository.head_of(worktree)[1] != task.branch:
        raise MuxError(f"the worktree of {name!r} is not on its branch '{task.branch}': check it out there first")
    return _put_back(ctx, task, doc)


def _put_back(ctx: Context, task: Task, doc: dict[str, str]) -> str:
    """The task as before the attempt, the attempt saved first in a recovery ref, which is returned."""
    ctx.store.require_writable()
    attempt = recovery_refs.write_recovery_ref(ctx.repo, task.name, task.branch, Path(task.worktree))
    lost = ["resolve attempt"]
    ctx.store.journal("recovery", name=task.name, ref=attempt, lost=lost, record=task_to_dict(task))
    before, now = (repository.resolve_commit(ctx.repo, ref) for ref in (doc["ref"], attempt))
    merging.put_back(Path(task.worktree), task.branch, doc["head"], before, now)
    ctx.store.journal("resolve-abort", name=task.name, head=doc["head"], attempt=attempt)
    radar.resolve_marker(ctx.store.root, task.name).unlink(missing_ok=True)
    return attempt
