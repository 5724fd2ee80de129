"""`mux merge --resolve`: a conflicting merge prepared for an agent to resolve, never in the main checkout.

By default the base is merged into the task's branch in the task's own worktree, for its own agent: a recovery ref
of the task as it was is written first, a marker (radar.resolve_marker) says what to undo, and the task's
uncommitted work is committed (as `mux merge` does) before the merge starts. With `-a AGENT` a
resolver sub-task, NAME-resolve, gets a worktree of its own on a branch made from the task's, the base merged in
there before its agent starts: the task's worktree and agent are left alone meanwhile (its agent may even be
working). The task's inbox records the resolver's states as of any sub-task, but its agent is not told them: a
notice typed into it started a turn of its own that then held `mux merge NAME` back as "working" (the real-agent
best-of test caught it), and the resolution is the user's to land, with `mux merge NAME`.

Once the agent is idle with the merge committed (and the repository's check passing there), `mux merge NAME`
completes as usual, the resolver's branch first merged into the task's; `mux merge NAME --abort-resolve` puts the
task back exactly as it was (or removes the resolver), the attempt kept in a recovery ref.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from muxagent import naming, render
from muxagent.commands.compare import check_task
from muxagent.commands.context import Context, get_task, load_tasks
from muxagent.commands.create import NewRequest, new_task
from muxagent.commands.interact import send
from muxagent.commands.merge import MergeRequest, MergeResult, Strategy, merge, work_message
from muxagent.commands.remove import remove
from muxagent.commands.report import list_reports
from muxagent.errors import MergeConflictError, MuxError
from muxagent.git import merging, recovery_refs, repository, runner, worktree_status
from muxagent.model import Progress, State, Task, no_progress
from muxagent.state import files
from muxagent.state.store import task_to_dict
from muxagent.status import radar

# Enough of each side's story for the agent; a long-lived branch must not make a prompt of thousands of lines.
_MESSAGES = 20
# The name of the resolver sub-task `--resolve -a AGENT` starts: NAME-resolve.
RESOLVER_SUFFIX = "-resolve"


@dataclass(frozen=True)
class Resolving:
    """`mux merge NAME --resolve` on a conflict: the merge is left for an agent, in the task's worktree for its
    own, or in the worktree of `resolver` (`-a AGENT`)."""

    task: Task
    target: str
    conflicts: list[str]
    recovery_ref: str | None  # of the task as it was; None with a resolver, which leaves the task untouched
    resolver: Task | None = None


def merge_or_resolve(
    ctx: Context, request: MergeRequest, resolve: bool, progress: Progress = no_progress, agent: str | None = None
) -> MergeResult | Resolving:
    """`mux merge`: once a resolve attempt is finished, or with none under way, merge; on a conflict with
    `resolve`, hand the merge to the task's agent, or with `agent` to a resolver sub-task, instead of refusing."""
    task = get_task(ctx, request.name)
    doc = radar.read_resolve_marker(ctx.store.root, task)
    if doc is not None:
        _land_resolution(ctx, task, doc, request, progress)
    try:
        result = merge(ctx, request, progress)
    except MergeConflictError as exc:
        if not resolve:
            raise
        if agent is not None:
            target = request.into or task.base
            return _start_resolver(ctx, task, target, agent, exc, work_message(ctx, task, request), progress)
        state = _agent_state(ctx, task)
        if state is not State.IDLE:
            # Its files would change under a working agent, or no agent would ever take the prompt.
            raise MergeConflictError(
                f"{exc}; not handed to its agent, which is {state.value} (--resolve needs it idle)", exc.paths
            ) from None
        started = _start(ctx, task, request.into or task.base, exc.paths, work_message(ctx, task, request), progress)
        if started.conflicts:
            return started
        result = merge(ctx, request, progress)  # its branch moved since the check: the merge went through
    radar.resolve_marker(ctx.store.root, task.name).unlink(missing_ok=True)
    return result


def _agent_state(ctx: Context, task: Task) -> State:
    states = {item.task.name: item.status.state for item in list_reports(ctx, with_changes=False)}
    return states.get(task.name, State.UNKNOWN)


def _land_resolution(ctx: Context, task: Task, doc: dict[str, str], request: MergeRequest, progress: Progress) -> None:
    """Refuse while the attempt is not finished; a resolver's finished work is merged into the task's branch (in
    its worktree, as any sub-task's) and the resolver removed, a recovery ref first."""
    if "resolver" not in doc:
        _require_resolved(ctx, task, task)
        return
    resolver = _resolver_of(ctx, task, doc)
    if resolver is not None:
        _require_resolved(ctx, task, resolver)
        tip, resolved = (repository.branch_tip(ctx.repo, t.branch) for t in (task, resolver))
        # The task's branch still where the resolver started: its merge commit lands as it is, no merge of a merge.
        moved = tip is None or resolved is None or not repository.is_ancestor(ctx.repo, tip, resolved)
        progress(f"merging the resolution of {resolver.name} into {task.name}")
        how = Strategy.MERGE if moved else Strategy.REBASE
        merge(ctx, MergeRequest(resolver.name, how, while_busy=request.while_busy), progress)
        ctx.notes.append(f"merged {resolver.name}'s resolution into {task.name}")
    # Gone without it (removed or merged by hand): there is nothing more to wait for.
    radar.resolve_marker(ctx.store.root, task.name).unlink(missing_ok=True)


def _resolver_of(ctx: Context, task: Task, doc: dict[str, str]) -> Task | None:
    """The resolver sub-task the marker names, if it is still that one (not a later task of its name)."""
    for found in load_tasks(ctx):
        if found.name == doc["resolver"] and found.parent == task.name and found.created == doc.get("resolver_created"):
            return found
    return None


def _require_resolved(ctx: Context, task: Task, by: Task) -> None:
    """Refuse while `by`, the task itself or its resolver, has not finished the merge, or its check fails."""
    state = _agent_state(ctx, by)
    whose = "its agent" if by is task else f"its resolver {by.name!r}"
    if state in (State.WORKING, State.WAITING, State.STARTING):
        raise MuxError(
            f"{task.name!r} is still resolving its merge ({whose} is {state.value}): `mux wait"
            f" {by.name}` and merge again, or give up with `mux merge {task.name} --abort-resolve`"
        )
    worktree = Path(by.worktree)
    if worktree.is_dir() and repository.in_progress(worktree) is not None:
        left = merging.unmerged_paths(worktree)
        what = f"{len(left)} file(s) still conflict" if left else "the merge is not committed yet"
        raise MergeConflictError(
            f"{task.name!r} is resolving its merge and {what}: let {whose} finish (`git commit` in"
            f" {by.worktree}), or give up with `mux merge {task.name} --abort-resolve`; nothing was changed",
            left,
        )
    _require_check_passes(ctx, task, by)


def _require_check_passes(ctx: Context, task: Task, by: Task) -> None:
    """The repository's `check`, once trusted, run in the resolved worktree: a resolution that breaks the tests is
    no resolution, and its merge would land them broken in the base."""
    settings = ctx.settings
    if settings.check is None or "check" in settings.ignored_keys:
        return
    run = check_task(ctx, by, settings.check)
    if run is None or (run.status == 0 and not run.timed_out):
        return
    how = f"timed out after {run.seconds:.0f}s" if run.timed_out else f"exited {run.status}"
    last = render.clean_line(run.last_lines(1)[0]) if run.last_lines(1) else ""
    whose = "its agent" if by is task else f"its resolver {by.name!r}"
    raise MuxError(
        f"{task.name!r} resolved its merge but the check ({settings.check}) {how}{': ' + last if last else ''}:"
        f" let {whose} fix it, or give up with `mux merge {task.name} --abort-resolve`; nothing was changed"
    )


def _start_resolver(
    ctx: Context, task: Task, target: str, agent: str, conflict: MergeConflictError, message: str, progress: Progress
) -> Resolving:
    """NAME-resolve, a sub-task of the task running `agent`, on a branch made from the task's with `target`
    merged in before its agent starts. The task's worktree is touched only to commit its uncommitted work first (as
    `mux merge` would) when its agent is idle or exited, the work the resolver must see; never while it works."""
    name = naming.validate_name(task.name + RESOLVER_SUFFIX)
    head = repository.branch_tip(ctx.repo, task.branch)
    onto = repository.branch_tip(ctx.repo, target)
    worktree = Path(task.worktree)
    if head is None or onto is None:
        raise MergeConflictError(f"{conflict}; {task.name!r} has no branch to resolve it from", conflict.paths)
    state = _agent_state(ctx, task)
    committed = None
    if worktree.is_dir() and state in (State.IDLE, State.EXITED) and worktree_status.has_changes(worktree):
        progress(f"saving a recovery ref of {task.name} and committing its uncommitted work")
        ctx.store.require_writable()
        ref = recovery_refs.write_recovery_ref(ctx.repo, task.name, task.branch, worktree)
        ctx.store.journal("recovery", name=task.name, ref=ref, lost=["resolve"], record=task_to_dict(task))
        committed = merging.commit_all(worktree, message)
    try:
        resolver, paths = _open_resolver(ctx, task, name, agent, target, committed or head, onto, state, progress)
    except MuxError:
        if committed is not None:
            merging.uncommit(worktree, task.branch, head, committed)
        raise
    doc = {
        "created": task.created, "target": target, "head": head, **({"commit": committed} if committed else {}),
        "resolver": name, "resolver_created": resolver.created, "resolver_worktree": resolver.worktree,
    }  # fmt: skip
    marker = radar.resolve_marker(ctx.store.root, task.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(marker, json.dumps(doc).encode())
    ctx.store.journal("resolve", name=task.name, onto=onto, conflicts=paths, resolver=name, commit=committed)
    return Resolving(task, target, paths, None, resolver)


def _open_resolver(
    ctx: Context, task: Task, name: str, agent: str, target: str, tip: str, onto: str, state: State,
    progress: Progress,
) -> tuple[Task, list[str]]:  # fmt: skip
    """The resolver sub-task from the task's `tip`, `onto` merged into its worktree before its agent starts, and the
    paths that conflict there."""
    paths = merging.merge_trees(ctx.repo, tip, onto)[1]
    if not paths:
        # The conflict is only in edits the task has not committed, which the resolver's branch does not have.
        raise MergeConflictError(
            f"{task.name!r} conflicts with {target} only in edits it has not committed, which mux commits for a"
            f" resolver only while its agent is idle (it is {state.value}): `mux wait {task.name}` and try again;"
            " nothing was changed",
            [],
        )
    progress(f"starting {name} to resolve the merge of {target} into {task.name}")
    request = NewRequest(
        name, agent=agent, prompt=_prompt(ctx, target, tip, onto, paths), base=task.branch, parent=task.name,
        notify="none",
        prepare=lambda worktree: merging.sync_in_worktree(worktree, onto, target, rebase=False),
    )  # fmt: skip
    return new_task(ctx, request, progress), paths


def _start(ctx: Context, task: Task, target: str, paths: list[str], message: str, progress: Progress) -> Resolving:
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
    # Committed first, as `mux merge` would: git refuses to merge into a file with an uncommitted edit, and such
    # an edit is what conflicts most often (an agent that does not commit). The put-back takes the commit back.
    progress(f"committing the uncommitted work of {task.name}")
    committed = merging.commit_all(worktree, message)
    progress(f"merging {target} into {task.name} in its worktree")
    try:
        left = merging.sync_in_worktree(worktree, onto, target, rebase=False)
    except MuxError:  # git refused to start and changed nothing but mux's commit, taken back here
        if committed is None:
            marker.unlink(missing_ok=True)
        else:
            _put_back(ctx, task, doc)
        raise
    ctx.store.journal("resolve", name=task.name, onto=onto, conflicts=left, commit=committed)
    try:
        if left:
            send(ctx, task.name, _prompt(ctx, target, committed or head, onto, left))
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


def abort_resolve(ctx: Context, name: str) -> str | None:
    """Put the task back exactly as it was before `mux merge --resolve`; returns the recovery ref of the attempt
    (None: a resolver removed by hand took it with it)."""
    task = get_task(ctx, name)
    doc = radar.read_resolve_marker(ctx.store.root, task)
    if doc is None:
        raise MuxError(f"{name!r} is not resolving a merge: nothing to abort")
    if "resolver" in doc:
        return _drop_resolver(ctx, task, doc)
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


def _drop_resolver(ctx: Context, task: Task, doc: dict[str, str]) -> str | None:
    """Remove the resolver, its attempt kept in the recovery ref its removal writes (returned; None when it was
    gone already), and take back the commit of the task's uncommitted work mux made for it, if any: the task's files
    stay as they are (its agent may have worked meanwhile)."""
    resolver = _resolver_of(ctx, task, doc)
    ref = remove(ctx, resolver.name, force=True).recovery_ref if resolver is not None else None
    commit = doc.get("commit")
    if commit is not None and not merging.uncommit(Path(task.worktree), task.branch, doc["head"], commit):
        ctx.notes.append(f"{task.name!r} has committed since: mux's commit of its work ({commit[:12]}) stays")
    radar.resolve_marker(ctx.store.root, task.name).unlink(missing_ok=True)
    ctx.store.journal("resolve-abort", name=task.name, resolver=doc["resolver"], attempt=ref)
    return ref
