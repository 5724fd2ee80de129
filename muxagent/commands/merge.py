"""Bringing work home without losing any: merge, sync, restore, gc, and finishing commands a crash interrupted.

The rules every function here keeps (DESIGN.md, "Never lose work"):
- a refused merge changes nothing anywhere: checks run first, on a snapshot of the task's worktree made with a
  scratch index, and the task's work is committed only once the merge is known to go through;
- a base branch checked out nowhere moves by compare-and-swap (`update-ref NEW OLD`); one checked out in the main
  checkout moves by `git merge --ff-only`, after mux checked that no local edit lies on a path the merge changes,
  so the user's checkout is never left mid-merge and never loses an edit; the stash is never used;
- before anything can drop a commit or a file, a recovery ref exists and the journal says so;
- a multi-step command records an intent first (muxagent.state.intents); `recover` finishes or rolls back one that a
  crash interrupted, from the next mux command.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from muxagent import config, naming, render
from muxagent.commands.tasks import (
    Context,
    Removal,
    _remove_if_empty,
    _remove_locked,
    _Undo,
    agent_env,
    get_task,
    journal_creation,
    journal_removal,
    load_tasks,
    mark_spawn,
    now_iso,
    reserve_worktree,
    send,
    worktree_path,
)
from muxagent.errors import (
    MergeConflictError,
    MuxError,
    TaskExistsError,
    UnknownTaskError,
    UsageError,
    WouldLoseWorkError,
)
from muxagent.git import gitops
from muxagent.model import AgentProfile, Progress, Task, no_progress
from muxagent.state import intents
from muxagent.state.store import Registry, task_from_dict, task_to_dict
from muxagent.status import adapters, radar

STRATEGIES = ("merge", "squash", "rebase")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# `mux gc --older-than` at most: a century, far older than any recovery ref, and a date that always exists.
MAX_GC_DAYS = 36525
_SHOWN = 5


# ---------------------------------------------------------------------------------------------- merge


@dataclass(frozen=True)
class MergeRequest:
    name: str
    strategy: str = "merge"
    message: str | None = None
    keep: bool = False
    into: str | None = None


@dataclass(frozen=True)
class MergeResult:
    task: Task
    target: str
    strategy: str
    old: str
    new: str
    committed: str | None  # the commit holding the task's uncommitted work, if there was any
    removal: Removal | None
    behind: list[str]


def merge(ctx: Context, request: MergeRequest, progress: Progress = no_progress) -> MergeResult:
    if request.strategy not in STRATEGIES:
        raise UsageError(f"unknown merge strategy {request.strategy!r}: use one of {', '.join(STRATEGIES)}")
    name = naming.validate_name(request.name)
    get_task(ctx, name)  # outside the lock: it may adopt tasks, which takes the lock itself
    root = ctx.store.root
    with intents.intent(root, "merge", name=name, keep=request.keep) as intent:
        with ctx.store.transaction() as registry:
            task = registry.get(name)
            if task is None:
                raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")
            result = _merge_locked(ctx, registry, task, request, intent, progress)
            if result.removal is not None:
                journal_removal(ctx, result.removal)
        intents.crash_point("merge:after-record")
    return replace(result, behind=_behind(ctx, result.target, result.new, exclude=name))


@dataclass(frozen=True)
class _Plan:
    target: str
    old: str  # the target branch's tip
    in_main: bool  # the target is checked out in the main checkout
    worktree: Path | None  # the task's worktree, None when it is gone
    dirty: bool


def _merge_locked(
    ctx: Context, registry: Registry, task: Task, request: MergeRequest, intent: intents.Intent, progress: Progress
) -> MergeResult:
    plan = _check(ctx, task, request)
    progress(f"checking that {task.name} merges cleanly into {plan.target}")
    state = _state(ctx, plan, task)
    _precheck(ctx, task, plan, state, request.strategy)
    intent.update(task=task_to_dict(task), target=plan.target, old=plan.old, strategy=request.strategy)
    intents.crash_point("merge:before-commit")
    committed = None
    # Refused after the commit (the final fast-forward, a late conflict): the task is left as it was found.
    with gitops.commit_undone_on_error(plan.worktree if plan.dirty else None):
        if plan.dirty and plan.worktree is not None:
            progress(f"committing the uncommitted work of {task.name}")
            committed = gitops.commit_all(plan.worktree, _work_message(task, request))
            ctx.store.journal("commit", name=task.name, commit=committed)
            intents.crash_point("merge:after-commit")
        tip = gitops.branch_tip(ctx.repo, task.branch)
        assert tip is not None  # _check made sure the branch exists, and committing on it keeps it
        progress(f"{'rebasing' if request.strategy == 'rebase' else 'merging'} {task.name} into {plan.target}")
        new = _result_commit(ctx, task, plan, tip, request)
        intent.update(new=new)
        intents.crash_point("merge:after-merge-commit")
        if plan.in_main and new != plan.old:
            progress(f"updating {plan.target} in the main checkout")
        _move_target(ctx, plan, new)
    ctx.store.journal("merge", name=task.name, target=plan.target, old=plan.old, new=new, strategy=request.strategy)
    intents.crash_point("merge:after-update")
    removal = None
    if not request.keep:
        progress(f"saving a recovery ref of {task.name} and removing its worktree")
        try:
            removal = _remove_locked(ctx, registry, task, force=True)
        except MuxError as exc:
            # The merge itself is done and must be reported as such; the task stays for `mux rm`.
            ctx.notes.append(f"merged, but removing task {task.name!r} failed: {exc}")
        intents.crash_point("merge:after-remove")
    return MergeResult(task, plan.target, request.strategy, plan.old, new, committed, removal, [])


def _check(ctx: Context, task: Task, request: MergeRequest) -> _Plan:
    """Every refusal that needs no merge result: target branch, who has it checked out, the task's worktree."""
    target = request.into or task.base
    old = gitops.branch_tip(ctx.repo, target)
    if old is None:
        raise MuxError(f"'{target}' is not a local branch: merge into a branch with --into BRANCH")
    users = gitops.branch_users(ctx.repo, target)
    others = [(path, how) for path, how in users if not (path == ctx.repo.main and how == "checked out")]
    if others:
        path, how = others[0]
        raise MuxError(
            f"branch '{target}' is {how} in {path}: mux merges only into a branch checked out in the main"
            " checkout or nowhere"
        )
    busy = gitops.in_progress(ctx.repo.main)
    if busy is not None:
        raise MuxError(f"the main checkout is in the middle of a {busy}: finish or abort it first")
    if gitops.branch_tip(ctx.repo, task.branch) is None:
        raise MuxError(
            f"branch '{task.branch}' of task {task.name!r} no longer exists: nothing to merge"
            f" (`mux rm {task.name}` saves what its worktree holds)"
        )
    worktree: Path | None = Path(task.worktree)
    dirty = False
    if worktree is not None and worktree.is_dir():
        gitops.require_checkout(worktree)
        head, branch = gitops.head_of(worktree)
        if branch != task.branch:
            where = f"on branch '{branch}'" if branch else f"on a detached HEAD at {(head or '?')[:12]}"
            raise MuxError(
                f"the worktree of {task.name!r} is {where}, not on '{task.branch}': check out '{task.branch}'"
                " there first, so that what mux merges is what the agent made"
            )
        busy = gitops.in_progress(worktree)
        if busy is not None:
            raise MuxError(f"the worktree of {task.name!r} is in the middle of a {busy}: finish or abort it first")
        dirty = gitops.has_changes(worktree)
        nested = gitops.nested_repositories(worktree) if dirty else []
        if nested:
            raise MuxError(
                f"{_names(nested)} in the worktree of {task.name!r} is a git repository of its own (a clone or"
                " `git init`), which a merge would commit as a gitlink no clone can check out: add it as a"
                f" submodule (`git submodule add URL {nested[0]}` there), delete its .git to merge its files, or"
                " move it out of the worktree; nothing was changed"
            )
        hidden = gitops.hidden_edits(worktree)
        if hidden:
            raise MuxError(
                f"{_names(hidden)} in the worktree of {task.name!r} has an edit git status hides (marked"
                " assume-unchanged or skip-worktree), which a merge would leave behind: run `git update-index"
                f" --no-assume-unchanged --no-skip-worktree {hidden[0]}` there first; nothing was changed"
            )
        inside = gitops.dirty_submodules(worktree)
        if inside and not request.keep:
            raise WouldLoseWorkError(
                f"submodule {', '.join(inside)} in the worktree of {task.name!r} has uncommitted files, which a"
                " merge cannot bring home (it records only the submodule's commit): commit them inside the"
                f" submodule first, or merge with --keep to leave them in the task (`mux rm --force {task.name}`"
                " would save them in a recovery ref)"
            )
    else:
        worktree = None
    return _Plan(target=target, old=old, in_main=bool(users), worktree=worktree, dirty=dirty)


def _state(ctx: Context, plan: _Plan, task: Task) -> str:
    """The commit that stands for the task's work: its branch tip, plus uncommitted work as a snapshot.

    Ignored files (`.env`) are never part of it: they are saved in the recovery ref, not merged.
    """
    tip = gitops.branch_tip(ctx.repo, task.branch)
    if tip is None:
        raise MuxError(f"branch '{task.branch}' of task {task.name!r} no longer exists: nothing to merge")
    if plan.worktree is not None and plan.dirty:
        return gitops.worktree_snapshot(plan.worktree, tip)
    return tip


def _precheck(ctx: Context, task: Task, plan: _Plan, state: str, strategy: str) -> None:
    """Refuse, changing nothing, when the merge would conflict or would touch a local edit in the main checkout."""
    tree, paths = gitops.merge_trees(ctx.repo, plan.old, state)
    if paths:
        raise MergeConflictError(
            f"{task.name!r} conflicts with {plan.target} in {_count(paths)}: nothing was changed;"
            f" run `mux sync {task.name}` to let its agent resolve them",
            paths,
        )
    undeclared = gitops.undeclared_gitlinks(ctx.repo, plan.old, tree)
    if undeclared:
        raise MuxError(
            f"{task.name!r} adds {_names(undeclared)} as a gitlink (another repository's commit) that .gitmodules"
            " does not declare, so every clone would get an empty folder there: `git submodule add URL PATH` in"
            f" the task declares it, `git rm --cached {undeclared[0]}` there drops it; nothing was changed"
        )
    if strategy == "rebase" and not gitops.is_ancestor(ctx.repo, plan.old, state):
        # A clean merge does not mean every commit replays cleanly: try it on the snapshot first.
        gitops.rebase_commits(ctx.repo, state, plan.old, _scratch(ctx, task))
    if plan.in_main:
        _check_main_checkout(ctx, plan, gitops.changed_paths(ctx.repo, plan.old, tree))


def _check_main_checkout(ctx: Context, plan: _Plan, touched: list[str]) -> None:
    local = gitops.dirty_paths(ctx.repo.main)
    clash = sorted(p for p in local if _overlaps(p, touched))
    if clash:
        raise WouldLoseWorkError(
            f"the main checkout has local changes where the merge into {plan.target} writes: {_names(clash)}"
            " (commit, move or discard them first; nothing was changed)"
        )


def _overlaps(path: str, touched: list[str]) -> bool:
    # A local file `a` blocks a merged `a/b` and a local `a/b` blocks a merged file `a`.
    stripped = path.rstrip("/")
    return any(t == stripped or t.startswith(stripped + "/") or stripped.startswith(t + "/") for t in touched)


def _result_commit(ctx: Context, task: Task, plan: _Plan, tip: str, request: MergeRequest) -> str:
    if gitops.is_ancestor(ctx.repo, tip, plan.old):
        return plan.old  # nothing the target lacks: no empty merge commit
    if request.strategy == "rebase":
        if gitops.is_ancestor(ctx.repo, plan.old, tip):
            return tip
        return gitops.rebase_commits(ctx.repo, tip, plan.old, _scratch(ctx, task))
    tree, paths = gitops.merge_trees(ctx.repo, plan.old, tip)
    if paths:  # the agent wrote more between the check and the commit
        raise MergeConflictError(
            f"{task.name!r} now conflicts with {plan.target} in {_count(paths)}: run `mux sync {task.name}`", paths
        )
    if request.strategy == "squash":
        if tree == gitops.tree_of(ctx.repo, plan.old):
            return plan.old  # already squash-merged: an empty commit would say nothing
        return gitops.commit_tree(ctx.repo, tree, [plan.old], _work_message(task, request))
    message = request.message or f"Merge branch '{task.branch}' into {plan.target}"
    return gitops.commit_tree(ctx.repo, tree, [plan.old, tip], message)


def _move_target(ctx: Context, plan: _Plan, new: str) -> None:
    if new == plan.old:
        return
    if plan.in_main:
        # Checked again on the final result: the task's worktree may have changed since the pre-check.
        _check_main_checkout(ctx, plan, gitops.changed_paths(ctx.repo, plan.old, new))
        gitops.fast_forward(ctx.repo.main, new)
    else:
        gitops.update_branch(ctx.repo, plan.target, new, plan.old, "mux merge")


def _scratch(ctx: Context, task: Task) -> Path:
    return ctx.store.root / "scratch" / task.name


def _work_message(task: Task, request: MergeRequest) -> str:
    text = request.message or (task.prompt or "").strip() or f"mux: work of task {task.name}"
    return text + "\n"


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
        tip = gitops.branch_tip(ctx.repo, task.branch)
        if tip is not None and not gitops.is_ancestor(ctx.repo, new, tip):
            names.append(task.name)
    return names


# ---------------------------------------------------------------------------------------------- sync


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
    gitops.require_checkout(worktree)
    head, branch = gitops.head_of(worktree)
    if branch != task.branch or head is None:
        raise MuxError(f"the worktree of {name!r} is not on its branch '{task.branch}': check it out there first")
    busy = gitops.in_progress(worktree)
    if busy is not None:
        raise MuxError(f"the worktree of {name!r} is in the middle of a {busy}: resolve or abort it first")
    onto = gitops.resolve_commit(ctx.repo, task.base)
    marker = radar.sync_marker(ctx.store.root, name)
    if gitops.is_ancestor(ctx.repo, onto, head):
        marker.unlink(missing_ok=True)
        return SyncResult(task, True, [], None)
    if rebase and gitops.has_changes(worktree):
        raise MuxError(
            f"the worktree of {name!r} has uncommitted changes: `mux sync --rebase` needs it clean"
            f" (commit them, or sync with a merge: `mux sync {name}`)"
        )
    # A rebase rewrites the task's commits and a conflict rewrites its files: keep the state before.
    ctx.store.require_writable()  # else a read-only `.git/mux` refused only after the ref was written
    progress(f"saving a recovery ref of {name}")
    ref = gitops.write_recovery_ref(ctx.repo, name, task.branch, worktree)
    ctx.store.journal("recovery", name=name, ref=ref, lost=["sync"], record=task_to_dict(task))
    progress(f"rebasing {name} onto {task.base}" if rebase else f"merging {task.base} into {name}")
    paths = gitops.sync_in_worktree(worktree, onto, task.base, rebase)
    ctx.store.journal("sync", name=name, onto=onto, rebase=rebase, conflicts=paths)
    if not paths:
        marker.unlink(missing_ok=True)
        return SyncResult(task, False, [], ref)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(onto + "\n", encoding="utf-8")
    asked = False
    if ask:
        verb = "rebase" if rebase else "merge"
        send(ctx, name, _resolve_prompt(task.base, verb, paths))
        asked = True
    return SyncResult(task, False, paths, ref, asked)


def _resolve_prompt(base: str, verb: str, paths: list[str]) -> str:
    # File names are the branch's to choose: one holding ESC [201~ ended the paste and typed the rest as keys; one
    # that is not UTF-8 is written as git quotes it (\351): a prompt must be text, and the agent's git shows it so.
    listing = "\n".join(f"- {render.clean_line(gitops.quote_path(p))}" for p in paths)
    finish = "git rebase --continue" if verb == "rebase" else "git commit --no-edit"
    return (
        f"The {verb} of {base} into this branch stopped on conflicts in these files:\n{listing}\n"
        f"Resolve the conflict markers in each, `git add` them, then run `{finish}`."
    )


# ---------------------------------------------------------------------------------------------- restore


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
    refs = gitops.list_recovery_refs(ctx.repo, name)
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
    record = _recorded_task(ctx, ref)
    tip, snapshot = gitops.recovery_parts(ctx.repo, commit)
    branch = naming.branch_for(name)
    worktree = Path(record.worktree) if record is not None else worktree_path(ctx, name)
    if worktree.exists():
        worktree = worktree_path(ctx, name)
    profile = _profile_for(ctx, record)
    adapter = adapters.install(profile.hooks, ctx.store.root)
    argv = [*profile.command, *adapter.args, *profile.resume_args]  # resume the conversation, as `mux restart`
    fields = {"name": name, "worktree": str(worktree), "base": record.base if record is not None else None, "ref": ref}
    intent = intents.intent(ctx.store.root, "restore", **fields)
    with intent as running, _Undo() as undo, ctx.store.transaction() as registry:
        if name in registry:
            raise TaskExistsError(f"task {name!r} exists: `mux rm {name}` it first, or restore under it by hand")
        progress(f"checking out the saved work of {name} into {worktree}")
        port = reserve_worktree(ctx, registry, undo, name, worktree, tip, if_taken="move it away first")
        intents.crash_point("restore:after-worktree")
        if snapshot is not None:
            gitops.apply_snapshot(worktree, snapshot)
        submodules = _restore_submodules(ctx, name, ref.rsplit("/", 1)[-1], worktree, progress)
        session = naming.session_for(ctx.repo.main)
        env = agent_env(ctx, name, worktree, port, profile, adapter)
        mark_spawn(ctx, name, None)
        # From here the agent may write what `ref` does not hold: a rollback must save the worktree again.
        running.update(agent_started=True)
        window = ctx.tmux.new_window(session, name, worktree, gitops.pane_command(worktree, argv), env, task=name)
        undo.push(lambda: ctx.tmux.kill_window(window))
        intents.crash_point("restore:after-window")
        task = Task(
            name=name,
            agent=profile.name,
            command=tuple(argv),
            base=record.base if record is not None else (gitops.current_branch(ctx.repo.main) or tip),
            branch=branch,
            worktree=str(worktree),
            session=session,
            window=window,
            created=record.created if record is not None else now_iso(),
            port=port,
            prompt=record.prompt if record is not None else None,
        )
        registry.add(task)
        journal_creation(ctx, undo, task, restored_from=ref)
    return Restored(task, ref, snapshot is not None, submodules)


def _restore_submodules(
    ctx: Context, name: str, stamp: str, worktree: Path, progress: Progress
) -> list[SavedSubmodule]:
    """Each submodule saved with this recovery ref, put back where possible: a failure (its URL unreachable, say)
    does not stop the restore, it says how to finish by hand."""
    found = []
    for saved in gitops.list_submodule_refs(ctx.repo, name):
        if saved.stamp != stamp:
            continue
        path, ref = saved.path, saved.ref
        progress(f"restoring submodule {path}")
        try:
            gitops.restore_submodule(ctx.repo, worktree, path, ref)
        except MuxError as exc:
            by_hand = f"`git submodule update --init {path}`, then `git -C {path} fetch {ctx.repo.common_dir} {ref}`"
            found.append(SavedSubmodule(path, ref, f"{exc}; to do it by hand: {by_hand}"))
        else:
            found.append(SavedSubmodule(path, ref))
    return found


def _recorded_task(ctx: Context, ref: str) -> Task | None:
    """The task as it was when the recovery ref was written (the journal keeps it), or None."""
    for entry in reversed(ctx.store.read_journal()):
        record = entry.get("record")
        if entry.get("ref") == ref and isinstance(record, dict):
            with contextlib.suppress(ValueError):
                return task_from_dict(record)
    return None


def _profile_for(ctx: Context, record: Task | None) -> AgentProfile:
    candidates = [record.agent] if record is not None else []
    candidates.append(ctx.settings.agent)
    for agent in candidates:
        with contextlib.suppress(MuxError):
            return config.resolve_agent(agent, ctx.settings)
    return config.resolve_agent("shell", ctx.settings)


def restore_hint(name: str, ref: str | None) -> str | None:
    if ref is None:
        return None
    return f"mux restore {name} --at {ref.rsplit('/', 1)[-1]}"


# ---------------------------------------------------------------------------------------------- gc


def gc(ctx: Context, older_than_days: float, dry_run: bool = False) -> list[str]:
    """Drop recovery refs older than the given age (by the UTC time in their name): the only way they go."""
    # nan passed `< 0` and then failed in timedelta, inf and 1e10 overflowed it: all tracebacks.
    if not 0 <= older_than_days <= MAX_GC_DAYS:
        raise UsageError(f"--older-than must be a number of days from 0 to {MAX_GC_DAYS}")
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    dropped = []
    saved = [(ref, commit, ref.rsplit("/", 1)[-1]) for ref, commit in gitops.list_recovery_refs(ctx.repo)]
    # Saved submodule states go with the recovery ref of the same stamp.
    saved += [(sub.ref, sub.commit, sub.stamp) for sub in gitops.list_submodule_refs(ctx.repo)]
    for ref, commit, name in saved:
        stamp = name.split("-", 1)[0]
        try:
            when = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            continue  # not a name mux wrote: not mux's to drop
        if when >= cutoff:
            continue
        if not dry_run:
            gitops.delete_recovery_ref(ctx.repo, ref, commit)
            ctx.store.journal("gc", ref=ref, commit=commit)
        dropped.append(ref)
    return dropped


# ---------------------------------------------------------------------------------------------- crash recovery


def recover(ctx: Context) -> None:
    """Finish or roll back every command a crash interrupted; each outcome becomes a note for the user."""
    with intents.orphaned(ctx.store.root) as found:
        for intent in found:
            op = intent.fields.get("op")
            finish = _RECOVER.get(str(op))
            if finish is None:
                ctx.notes.append(f"found an unreadable record of an interrupted mux command: {_kept(intent)}")
                continue
            try:
                note = finish(ctx, intent.fields)
            except MuxError as exc:
                ctx.notes.append(f"could not finish an interrupted `mux {op}`: {exc} (will retry)")
                intent.update(recovery_failed=str(exc))  # for `mux doctor`
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


def _recover_new(ctx: Context, fields: dict[str, Any]) -> str | None:
    """Roll back: a task is created whole or not at all; what its worktree holds by then is saved first."""
    return _roll_back_creation(ctx, fields, "new", save=True)


def _recover_restore(ctx: Context, fields: dict[str, Any]) -> str | None:
    """Roll back as `mux new`, saving the worktree again only once its agent may have written to it: before, it
    holds no more than the ref it came from, and a newer ref of it (the branch tip alone, when the crash came
    before the files were put back) made a plain `mux restore` bring the task back without its files."""
    return _roll_back_creation(ctx, fields, "restore", save=bool(fields.get("agent_started")))


def _roll_back_creation(ctx: Context, fields: dict[str, Any], op: str, save: bool) -> str | None:
    """Remove what an interrupted `op` made (window, worktree, branch), first saving it when `save` and it holds
    work; the note names the command as the user typed it."""
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
        base=base if isinstance(base, str) else (gitops.current_branch(ctx.repo.main) or "HEAD"),
        branch=branch,
        worktree=worktree if isinstance(worktree, str) else str(worktree_path(ctx, name)),
        session=naming.session_for(ctx.repo.main),
        window="",
        created=now_iso(),
        port=0,
    )
    window = _find_window(ctx, task)
    has_branch = gitops.branch_exists(ctx.repo, branch)
    path = Path(task.worktree)
    present = path.is_dir() or any(w.path == path for w in gitops.list_worktrees(ctx.repo))
    if not (window or has_branch or present):
        return None
    lost = gitops.unsaved_work(ctx.repo, Path(task.worktree) if present else None, branch, task.base) if save else []
    removal = _remove_locked(ctx, Registry(), replace(task, window=window), force=True, save=bool(lost))
    _remove_if_empty(Path(task.worktree).parent)
    hint = restore_hint(name, removal.recovery_ref)
    saved = f"; its files are saved: `{hint}`" if hint else ""
    if not hint and isinstance(fields.get("ref"), str):
        saved = f"; its saved work is still in {fields['ref']}: `mux restore {name}`"
    return f"rolled back an interrupted `mux {op} {name}` (window, worktree and branch removed){saved}"


def _recover_rm(ctx: Context, fields: dict[str, Any]) -> str | None:
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


def _recover_merge(ctx: Context, fields: dict[str, Any]) -> str | None:
    """The base moved to the merge result: finish (remove the task unless --keep). It did not: nothing to undo."""
    name = str(fields.get("name"))
    with contextlib.suppress(MuxError):
        gitops.discard_scratch(ctx.repo, ctx.store.root / "scratch" / name)
    target, old, new = fields.get("target"), fields.get("old"), fields.get("new")
    if not isinstance(target, str) or not isinstance(old, str):
        return None  # interrupted during its checks: nothing had changed
    tip = gitops.branch_tip(ctx.repo, target)
    # Merged if the target holds the result, even if the user committed on top of it since.
    merged = isinstance(new, str) and tip is not None and (tip == new or gitops.is_ancestor(ctx.repo, new, tip))
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
    refs = gitops.list_recovery_refs(ctx.repo, task.name)
    tip = gitops.branch_tip(ctx.repo, task.branch)
    if refs and not Path(task.worktree).is_dir() and tip is not None:
        ref, commit = refs[-1]
        if gitops.recovery_parts(ctx.repo, commit)[0] == tip:
            saved = ref
    removal = _remove_locked(
        ctx, registry, replace(task, window=_find_window(ctx, task)), force=True, save=saved is None
    )
    return removal if saved is None else replace(removal, recovery_ref=saved)


def _kept(intent: intents.Intent) -> str:
    return f"set it aside as {intent.set_aside()} (read it, then delete it)"


_RECOVER = {"new": _recover_new, "restore": _recover_restore, "rm": _recover_rm, "merge": _recover_merge}


def _find_window(ctx: Context, task: Task) -> str:
    """The task's window by its @mux_task option in this repo's session (ids alone are reused by tmux)."""
    session = naming.session_for(ctx.repo.main)
    try:
        panes = ctx.tmux.snapshot()
    except MuxError:
        return ""
    return next((p.window_id for p in panes if p.session == session and p.task == task.name), "")
