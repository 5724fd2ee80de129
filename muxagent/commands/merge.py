"""`mux merge`: a task's work brought home into its base without losing any.

The rules every function here keeps (DESIGN.md, "Never lose work"):
- a refused merge changes nothing anywhere: checks run first, on a snapshot of the task's worktree made with a
  scratch index, and the task's work is committed only once the merge is known to go through;
- a base branch checked out nowhere moves by compare-and-swap (`update-ref NEW OLD`); one checked out in the main
  checkout or in another task's worktree (a sub-task's parent) moves by `git merge --ff-only` there, after mux
  checked that no local edit lies on a path the merge changes and that the branch is still where the check saw
  it, so that checkout is never left mid-merge and never loses an edit; the stash is never used;
- before anything can drop a commit or a file, a recovery ref exists and the journal says so;
- a multi-step command records an intent first (muxagent.state.intents); muxagent.commands.recovery finishes or
  rolls back one that a crash interrupted, from the next mux command.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from muxagent import naming
from muxagent.commands.context import Context, get_task, load_tasks
from muxagent.commands.create import calling_task
from muxagent.commands.remove import Removal, journal_removal, remove_locked, sub_tasks, unsaved_work_of
from muxagent.commands.report import list_reports
from muxagent.commands.sync import SyncAllResult, sync_all
from muxagent.errors import MergeConflictError, MuxError, UnknownTaskError, WouldLoseWorkError
from muxagent.git import checkpoints, diffs, merging, repository, worktree_status, worktrees
from muxagent.model import Progress, State, Task, no_progress
from muxagent.state import intents
from muxagent.state.store import Registry, task_to_dict


class Strategy(enum.StrEnum):
    """How a task's commits land on the target: a merge commit, one squashed commit, or rebased onto it."""

    MERGE = "merge"
    SQUASH = "squash"
    REBASE = "rebase"

    @property
    def done(self) -> str:
        """How the merge message names the commit it made."""
        return {"merge": "merge commit", "squash": "squashed into", "rebase": "rebased, now at"}[self.value]


_SHOWN = 5


@dataclass(frozen=True)
class MergeRequest:
    name: str
    strategy: Strategy = Strategy.MERGE
    message: str | None = None
    keep: bool = False
    into: str | None = None
    # Merge into a task whose agent is working: its files change under it (refused without this, unless mux runs
    # in that task's own pane, where it is the agent that asks).
    while_busy: bool = False


@dataclass(frozen=True)
class MergeResult:
    task: Task
    target: str
    strategy: Strategy
    old: str
    new: str
    committed: str | None  # the commit holding the task's uncommitted work, if there was any
    removal: Removal | None
    behind: list[str]
    synced: SyncAllResult | None = None  # what `sync_after_merge` did to the other tasks on the target


def merge(ctx: Context, request: MergeRequest, progress: Progress = no_progress) -> MergeResult:
    name = naming.validate_name(request.name)
    found = get_task(ctx, name)  # outside the lock: it may adopt tasks, which takes the lock itself
    # Outside the lock too: reading the agents' states reads the registry.
    _refuse_while_owner_busy(ctx, found, request)
    # Read first: a bad .mux.toml must refuse the merge, not fail after it.
    sync_after = ctx.settings.sync_after_merge
    if found.host is None:
        return _merge_here(ctx, name, request, sync_after, progress)
    from muxagent.commands import remote

    progress(f"fetching the work of {name} from {found.host}")
    remote.bring_home(ctx, found, work_message(ctx, found, request))
    try:
        return _merge_here(ctx, name, request, sync_after, progress)
    except BaseException:
        # Refused (a conflict, a dirty main checkout): nothing changes here or there, not even a fetched branch.
        remote.drop_fetched(ctx, found)
        raise


def _merge_here(ctx: Context, name: str, request: MergeRequest, sync_after: bool, progress: Progress) -> MergeResult:
    """The merge into a local branch; a task on another host has its branch fetched here first."""
    root = ctx.store.root
    with intents.intent(root, intents.MergeRecord(op="merge", name=name, keep=request.keep)) as intent:
        with ctx.store.transaction() as registry:
            task = registry.get(name)
            if task is None:
                raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")
            result = _merge_locked(ctx, registry, task, request, intent, progress)
            if result.removal is not None:
                journal_removal(ctx, result.removal)
        intents.crash_point("merge:after-record")
    synced = None
    if sync_after and result.new != result.old:
        synced = sync_all(ctx, base=result.target, exclude=name, progress=progress)
    return replace(result, behind=_behind(ctx, result.target, result.new, exclude=name), synced=synced)


@dataclass(frozen=True)
class _Plan:
    target: str
    old: str  # the target branch's tip
    checkout: Path | None  # where the target is checked out: the main checkout, a task's worktree, or nowhere
    owner: Task | None  # the task whose worktree `checkout` is (a sub-task's parent); None for the main checkout
    worktree: Path | None  # the task's worktree, None when it is gone
    dirty: bool

    @property
    def where(self) -> str:
        return "the main checkout" if self.owner is None else f"the worktree of {self.owner.name!r}"


def _merge_locked(
    ctx: Context,
    registry: Registry,
    task: Task,
    request: MergeRequest,
    intent: intents.Intent[intents.MergeRecord],
    progress: Progress,
) -> MergeResult:
    _refuse_unmerged_sub_tasks(ctx, registry, task)
    plan = _check(ctx, registry, task, request)
    progress(f"checking that {task.name} merges cleanly into {plan.target}")
    state = _state(ctx, plan, task)
    _precheck(ctx, task, plan, state, request.strategy)
    intent.fields.update(
        {"task": task_to_dict(task), "target": plan.target, "old": plan.old, "strategy": request.strategy}
    )
    intent.save()
    intents.crash_point("merge:before-commit")
    committed = None
    # Refused after the commit (the final fast-forward, a late conflict): the task is left as it was found.
    with merging.commit_undone_on_error(plan.worktree if plan.dirty else None):
        if plan.dirty and plan.worktree is not None:
            progress(f"committing the uncommitted work of {task.name}")
            committed = merging.commit_all(plan.worktree, work_message(ctx, task, request))
            ctx.store.journal("commit", name=task.name, commit=committed)
            intents.crash_point("merge:after-commit")
        tip = repository.branch_tip(ctx.repo, task.branch)
        assert tip is not None  # _check made sure the branch exists, and committing on it keeps it
        progress(f"{'rebasing' if request.strategy is Strategy.REBASE else 'merging'} {task.name} into {plan.target}")
        new = _result_commit(ctx, task, plan, tip, request)
        intent.fields["new"] = new
        intent.save()
        intents.crash_point("merge:after-merge-commit")
        if plan.checkout is not None and new != plan.old:
            progress(f"updating {plan.target} in {plan.where}")
        _move_target(ctx, plan, new)
    ctx.store.journal("merge", name=task.name, target=plan.target, old=plan.old, new=new, strategy=request.strategy)
    intents.crash_point("merge:after-update")
    removal = None
    if not request.keep:
        progress(f"saving a recovery ref of {task.name} and removing its worktree")
        try:
            removal = remove_locked(ctx, registry, task, force=True)
        except MuxError as exc:
            # The merge itself is done and must be reported as such; the task stays for `mux rm`.
            ctx.notes.append(f"merged, but removing task {task.name!r} failed: {exc}")
        intents.crash_point("merge:after-remove")
    return MergeResult(task, plan.target, request.strategy, plan.old, new, committed, removal, [])


def _refuse_while_owner_busy(ctx: Context, task: Task, request: MergeRequest) -> None:
    """Refuse to change the files of a task whose agent is working, unless that agent asked (mux runs in its pane)
    or the user said so: its next edit or test run would meet files it did not expect."""
    if request.while_busy:
        return
    target = request.into or task.base
    owner = _checkout_of(ctx, target, task, load_tasks(ctx))[1]
    if owner is None or calling_task(ctx) == owner.name:
        return
    states = {item.task.name: item.status.state for item in list_reports(ctx, with_changes=False)}
    if states.get(owner.name) is State.WORKING:
        raise MuxError(
            f"{owner.name!r} is working, and merging {task.name!r} changes the files under its agent: run it from"
            f" {owner.name!r}'s own pane, after `mux wait {owner.name}`, or with --while-busy"
        )


def _refuse_unmerged_sub_tasks(ctx: Context, registry: Registry, task: Task) -> None:
    """A parent merged (and removed) before its sub-tasks' work is in it would leave that work behind."""
    unmerged = [child.name for child in sub_tasks(registry.values(), task.name) if unsaved_work_of(ctx, child)]
    if unmerged:
        raise MuxError(
            f"{task.name!r} has sub-tasks whose work is not merged into it: {_names(sorted(unmerged))} (merge them"
            f" first with `mux merge NAME`, or remove them); nothing was changed"
        )


def _checkout_of(ctx: Context, target: str, task: Task, tasks: Iterable[Task]) -> tuple[Path | None, Task | None]:
    """Where branch `target` is checked out, if anywhere, and the task whose worktree that is (None for the main
    checkout); MuxError when mux must not move it there: rebased or bisected somewhere, checked out in a worktree
    mux did not make, or in the merged task's own."""
    users = worktrees.branch_users(ctx.repo, target)
    if not users:
        return None, None
    path, how = users[0]
    if len(users) == 1 and how == "checked out":
        if path == ctx.repo.main:
            return path, None
        owner = next((t for t in tasks if Path(os.path.realpath(t.worktree)) == path), None)
        if owner is not None and owner.name != task.name:
            return path, owner
    path, how = next(((p, h) for p, h in users if not (p == ctx.repo.main and h == "checked out")), users[0])
    raise MuxError(
        f"branch '{target}' is {how} in {path}: mux merges only into a branch checked out in the main checkout, in"
        " another task's worktree, or nowhere"
    )


def _check(ctx: Context, registry: Registry, task: Task, request: MergeRequest) -> _Plan:
    """Every refusal that needs no merge result: target branch, who has it checked out, the task's worktree."""
    target = request.into or task.base
    old = repository.branch_tip(ctx.repo, target)
    if old is None:
        raise MuxError(f"'{target}' is not a local branch: merge into a branch with --into BRANCH")
    checkout, owner = _checkout_of(ctx, target, task, registry.values())
    busy = repository.in_progress(ctx.repo.main)
    if busy is not None:
        raise MuxError(f"the main checkout is in the middle of a {busy}: finish or abort it first")
    if owner is not None and checkout is not None:
        worktrees.require_checkout(checkout)
        busy = repository.in_progress(checkout)
        if busy is not None:
            raise MuxError(f"the worktree of {owner.name!r} is in the middle of a {busy}: finish or abort it first")
    if repository.branch_tip(ctx.repo, task.branch) is None:
        raise MuxError(
            f"branch '{task.branch}' of task {task.name!r} no longer exists: nothing to merge"
            f" (`mux rm {task.name}` saves what its worktree holds)"
        )
    # A task on another host: its work was fetched into its branch, and `worktree` is a path there.
    worktree: Path | None = Path(task.worktree) if task.host is None else None
    dirty = False
    if worktree is not None and worktree.is_dir():
        worktrees.require_checkout(worktree)
        head, branch = repository.head_of(worktree)
        if branch != task.branch:
            where = f"on branch '{branch}'" if branch else f"on a detached HEAD at {(head or '?')[:12]}"
            raise MuxError(
                f"the worktree of {task.name!r} is {where}, not on '{task.branch}': check out '{task.branch}'"
                " there first, so that what mux merges is what the agent made"
            )
        busy = repository.in_progress(worktree)
        if busy is not None:
            raise MuxError(f"the worktree of {task.name!r} is in the middle of a {busy}: finish or abort it first")
        dirty = worktree_status.has_changes(worktree)
        nested = worktree_status.nested_repositories(worktree) if dirty else []
        if nested:
            raise MuxError(
                f"{_names(nested)} in the worktree of {task.name!r} is a git repository of its own (a clone or"
                " `git init`), which a merge would commit as a gitlink no clone can check out: add it as a"
                f" submodule (`git submodule add URL {nested[0]}` there), delete its .git to merge its files, or"
                " move it out of the worktree; nothing was changed"
            )
        hidden = worktree_status.hidden_edits(worktree)
        if hidden:
            raise MuxError(
                f"{_names(hidden)} in the worktree of {task.name!r} has an edit git status hides (marked"
                " assume-unchanged or skip-worktree), which a merge would leave behind: run `git update-index"
                f" --no-assume-unchanged --no-skip-worktree {hidden[0]}` there first; nothing was changed"
            )
        inside = worktree_status.dirty_submodules(worktree)
        if inside and not request.keep:
            raise WouldLoseWorkError(
                f"submodule {', '.join(inside)} in the worktree of {task.name!r} has uncommitted files, which a"
                " merge cannot bring home (it records only the submodule's commit): commit them inside the"
                f" submodule first, or merge with --keep to leave them in the task (`mux rm --force {task.name}`"
                " would save them in a recovery ref)"
            )
    else:
        worktree = None
    return _Plan(target=target, old=old, checkout=checkout, owner=owner, worktree=worktree, dirty=dirty)


def _state(ctx: Context, plan: _Plan, task: Task) -> str:
    """The commit that stands for the task's work: its branch tip, plus uncommitted work as a snapshot.

    Ignored files (`.env`) are never part of it: they are saved in the recovery ref, not merged.
    """
    tip = repository.branch_tip(ctx.repo, task.branch)
    if tip is None:
        raise MuxError(f"branch '{task.branch}' of task {task.name!r} no longer exists: nothing to merge")
    if plan.worktree is not None and plan.dirty:
        return merging.worktree_snapshot(plan.worktree, tip)
    return tip


def _precheck(ctx: Context, task: Task, plan: _Plan, state: str, strategy: Strategy) -> None:
    """Refuse, changing nothing, when the merge would conflict or would touch a local edit in the main checkout."""
    tree, paths = merging.merge_trees(ctx.repo, plan.old, state)
    if paths:
        raise MergeConflictError(
            f"{task.name!r} conflicts with {plan.target} in {_count(paths)}: nothing was changed;"
            f" run `mux sync {task.name}` to let its agent resolve them",
            paths,
        )
    undeclared = merging.undeclared_gitlinks(ctx.repo, plan.old, tree)
    if undeclared:
        raise MuxError(
            f"{task.name!r} adds {_names(undeclared)} as a gitlink (another repository's commit) that .gitmodules"
            " does not declare, so every clone would get an empty folder there: `git submodule add URL PATH` in"
            f" the task declares it, `git rm --cached {undeclared[0]}` there drops it; nothing was changed"
        )
    if strategy is Strategy.REBASE and not repository.is_ancestor(ctx.repo, plan.old, state):
        # A clean merge does not mean every commit replays cleanly: try it on the snapshot first.
        merging.rebase_commits(ctx.repo, state, plan.old, _scratch(ctx, task))
    if plan.checkout is not None:
        _check_checkout(plan, plan.checkout, diffs.changed_paths(ctx.repo, plan.old, tree))


def _check_checkout(plan: _Plan, checkout: Path, touched: list[str]) -> None:
    local = worktree_status.dirty_paths(checkout)
    clash = sorted(p for p in local if _overlaps(p, touched))
    if clash:
        raise WouldLoseWorkError(
            f"{plan.where} has local changes where the merge into {plan.target} writes: {_names(clash)}"
            " (commit, move or discard them first; nothing was changed)"
        )


def _overlaps(path: str, touched: list[str]) -> bool:
    # A local file `a` blocks a merged `a/b` and a local `a/b` blocks a merged file `a`.
    stripped = path.rstrip("/")
    return any(t == stripped or t.startswith(stripped + "/") or stripped.startswith(t + "/") for t in touched)


def _result_commit(ctx: Context, task: Task, plan: _Plan, tip: str, request: MergeRequest) -> str:
    if repository.is_ancestor(ctx.repo, tip, plan.old):
        return plan.old  # nothing the target lacks: no empty merge commit
    if request.strategy is Strategy.REBASE:
        if repository.is_ancestor(ctx.repo, plan.old, tip):
            return tip
        return merging.rebase_commits(ctx.repo, tip, plan.old, _scratch(ctx, task))
    tree, paths = merging.merge_trees(ctx.repo, plan.old, tip)
    if paths:  # the agent wrote more between the check and the commit
        raise MergeConflictError(
            f"{task.name!r} now conflicts with {plan.target} in {_count(paths)}: run `mux sync {task.name}`", paths
        )
    if request.strategy is Strategy.SQUASH:
        if tree == repository.tree_of(ctx.repo, plan.old):
            return plan.old  # already squash-merged: an empty commit would say nothing
        return merging.commit_tree(ctx.repo, tree, [plan.old], work_message(ctx, task, request))
    message = request.message or f"Merge branch '{task.branch}' into {plan.target}"
    return merging.commit_tree(ctx.repo, tree, [plan.old, tip], message)


def _move_target(ctx: Context, plan: _Plan, new: str) -> None:
    if new == plan.old:
        return
    if plan.checkout is not None:
        # Checked again on the final result: the task's worktree may have changed since the pre-check, and the
        # parent's agent may have committed or switched branches meanwhile (`merge --ff-only` would then
        # carry its new commits along or refuse with git's words).
        _check_checkout(plan, plan.checkout, diffs.changed_paths(ctx.repo, plan.old, new))
        if repository.head_of(plan.checkout) != (plan.old, plan.target):
            raise MuxError(
                f"branch '{plan.target}' moved in {plan.where} while mux was merging into it: nothing was changed,"
                " try again"
            )
        merging.fast_forward(plan.checkout, new)
    else:
        merging.update_branch(ctx.repo, plan.target, new, plan.old, "mux merge")


def _scratch(ctx: Context, task: Task) -> Path:
    return ctx.store.root / "scratch" / task.name


def work_message(ctx: Context, task: Task, request: MergeRequest) -> str:
    """The user's message as given, else the first prompt with a body listing the turns (issue 16)."""
    if request.message:
        return request.message + "\n"
    text = (task.prompt or "").strip() or f"mux: work of task {task.name}"
    body = checkpoints.turns_body(checkpoints.list_checkpoints(ctx.repo, task.name))
    return text + (f"\n\n{body}" if body else "") + "\n"


def _count(paths: list[str]) -> str:
    return f"{len(paths)} file{'' if len(paths) == 1 else 's'}"


def _names(paths: list[str]) -> str:
    return ", ".join(paths[:_SHOWN]) + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def _behind(ctx: Context, target: str, new: str, exclude: str) -> list[str]:
    """Other tasks on `target` that do not have its new tip yet."""
    names = []
    for task in load_tasks(ctx):
        if task.name == exclude or task.base != target:
            continue
        tip = repository.branch_tip(ctx.repo, task.branch)
        if tip is not None and not repository.is_ancestor(ctx.repo, new, tip):
            names.append(task.name)
    return names
