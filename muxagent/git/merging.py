"""Bringing work across branches: merge-tree, commit-tree, rebase, sync in a worktree, fast-forward."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from muxagent.errors import GitError, MergeConflictError
from muxagent.git.recovery_refs import MUX_IDENTITY, apply_snapshot, snapshot_tree, submodule_paths
from muxagent.git.repository import RepoPaths, in_progress
from muxagent.git.runner import NO_HOOKS, error_line, run_git
from muxagent.git.worktree_status import read_status

# A user's rebase config must not reach outside the task: update-refs would move other branches that point into
# the replayed commits, autostash would use the stash.
_REBASE_SAFE = ("-c", "rebase.autoStash=false", "-c", "rebase.updateRefs=false", "-c", "rebase.autoSquash=false")

# Fixed dates make a snapshot of the same tree on the same parent the same commit, so the conflict radar can
# cache its results by commit ids.
_FIXED_DATES = {"GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000"}


def merge_trees(repo: RepoPaths, ours: str, theirs: str) -> tuple[str, list[str]]:
    """(merged tree, conflicting paths) of merging two commits, written to the object store only.

    `git merge-tree --write-tree` touches no worktree, index or ref (git >= 2.38).
    """
    args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs]
    proc = run_git(repo.main, *args, ok=(0, 1))
    fields = proc.stdout.split("\0")
    paths = [p for p in fields[1:] if p] if proc.returncode == 1 else []
    return fields[0].strip(), paths


def undeclared_gitlinks(repo: RepoPaths, old: str, tree: str) -> list[str]:
    """Gitlinks (submodule commits) that `tree` adds or moves since commit `old` and that its .gitmodules does not
    declare: a clone gets an empty folder for each, and `git submodule update` fails on it."""
    out = run_git(repo.main, "diff-tree", "-r", "-z", "--no-renames", old, tree).stdout.split("\0")
    links = [path for meta, path in zip(out[::2], out[1::2], strict=False) if meta.split(" ")[1:2] == ["160000"]]
    if not links:
        return []
    declared: set[str] = set()
    if run_git(repo.main, "cat-file", "-e", f"{tree}:.gitmodules", ok=(0, 1, 128)).returncode == 0:
        declared = submodule_paths(repo.main, "--blob", f"{tree}:.gitmodules")
    return [path for path in links if path not in declared]


def commit_tree(repo: RepoPaths, tree: str, parents: Sequence[str], message: str) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return run_git(repo.main, *args, stdin=message).stdout.strip()


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit everything in the worktree (untracked files too, ignored ones not) on its branch, with no hooks.

    Returns the new commit, or None when there was nothing to commit.
    """
    status = read_status(worktree)
    if not (status.tracked or status.untracked):
        return None
    run_git(worktree, "add", "--sparse", "-A")  # --sparse: see snapshot_tree
    if run_git(worktree, "diff", "--cached", "--quiet", ok=(0, 1)).returncode == 0:
        return None  # only changes inside submodules, which `add` cannot take
    run_git(worktree, *NO_HOOKS, "commit", "--no-verify", "-q", "-F", "-", stdin=message)
    return run_git(worktree, "rev-parse", "HEAD").stdout.strip()


@contextmanager
def commit_undone_on_error(worktree: Path | None) -> Iterator[None]:
    """If the block raises, take back the one commit it made on the worktree's branch, and restore the index
    as it was: a merge that git's final `merge --ff-only` refuses must leave the task's work uncommitted, as it
    found it. A branch someone else moved since is left alone."""
    if worktree is None:
        yield
        return
    head = run_git(worktree, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    index = Path(run_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="mux-index-") as tmp:
        saved = Path(tmp) / "index"
        if index.exists():
            shutil.copy2(index, saved)
        try:
            yield
        except BaseException:
            # Best effort: failing here would hide the error that matters, and the work is committed, not lost.
            with suppress(GitError, OSError):
                _take_back_commit(worktree, head, index, saved)
            raise


def _take_back_commit(worktree: Path, head: str, index: Path, saved: Path) -> None:
    now = run_git(worktree, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    parent = run_git(worktree, "rev-parse", "--verify", "-q", "HEAD^", ok=(0, 1)).stdout.strip()
    if not head or now == head or parent != head:
        return
    run_git(worktree, "reset", "-q", "--soft", head)
    if saved.exists():
        # Through git's own lock file, so an agent's git running meanwhile never sees a half-written index.
        lock = index.with_name(index.name + ".lock")
        with open(lock, "xb") as out:
            out.write(saved.read_bytes())
        os.replace(lock, index)


def update_branch(repo: RepoPaths, branch: str, new: str, old: str, reason: str) -> None:
    """Move a branch that no worktree has checked out, only if it still points at `old` (compare-and-swap)."""
    proc = run_git(repo.main, "update-ref", "-m", reason, f"refs/heads/{branch}", new, old, ok=(0, 1, 128))
    if proc.returncode != 0:
        raise GitError(f"branch '{branch}' moved while mux was merging into it: nothing was changed, try again")


def fast_forward(worktree: Path, new: str) -> None:
    """Move the branch checked out in `worktree` forward to `new`, updating index and files.

    `git merge --ff-only` refuses rather than overwrite a local change; --no-autostash keeps the user's stash out
    of it whatever their config says.
    """
    run_git(worktree, *NO_HOOKS, "merge", "--ff-only", "--no-autostash", "--no-stat", "-q", new)


def worktree_snapshot(worktree: Path, parent: str) -> str:
    """A commit of the worktree as it is on disk (untracked files included) on `parent`, via a scratch index.

    Same content, same commit: the identity and dates are fixed.
    """
    tree = snapshot_tree(worktree, [])
    env = {**MUX_IDENTITY, **_FIXED_DATES}
    return run_git(worktree, "commit-tree", "-p", parent, "-m", "mux snapshot", tree, env=env).stdout.strip()


def rebase_commits(repo: RepoPaths, tip: str, onto: str, scratch: Path) -> str:
    """`tip`'s commits replayed linearly onto `onto`, in a throwaway detached worktree; returns the new tip.

    Neither the task's worktree nor the main checkout is touched. MergeConflictError if a commit does not apply.
    """
    if os.path.lexists(scratch):
        discard_scratch(repo, scratch)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    run_git(repo.main, *NO_HOOKS, "worktree", "add", "--detach", "-f", "--", str(scratch), tip)
    try:
        args = [*NO_HOOKS, *_REBASE_SAFE, "rebase", "--no-autostash", "--no-update-refs", "-q", onto]
        proc = run_git(scratch, *args, ok=(0, 1, 128))
        if proc.returncode != 0:
            paths = unmerged_paths(scratch)
            raise MergeConflictError(f"replaying the task's commits on {onto[:12]} conflicts", paths)
        return run_git(scratch, "rev-parse", "HEAD").stdout.strip()
    finally:
        discard_scratch(repo, scratch)


def discard_scratch(repo: RepoPaths, scratch: Path) -> None:
    """Remove a throwaway worktree mux made (rebase-in-progress or not)."""
    if scratch.is_dir():
        run_git(repo.main, "worktree", "remove", "--force", "--force", "--", str(scratch), ok=(0, 128))
        shutil.rmtree(scratch, ignore_errors=True)
    run_git(repo.main, "worktree", "prune")


def unmerged_paths(worktree: Path) -> list[str]:
    out = run_git(worktree, "diff", "--name-only", "--diff-filter=U", "-z").stdout
    return sorted({p for p in out.split("\0") if p})


def abort_merge(worktree: Path) -> None:
    """Take back a merge `sync_in_worktree` left conflicting: the worktree as it was before it started."""
    run_git(worktree, *NO_HOOKS, "merge", "--abort")


def commit_messages(repo: RepoPaths, since: str, tip: str, limit: int) -> list[str]:
    """The messages of the newest `limit` commits on `tip` that `since` lacks, merges left out, newest first."""
    args = ["log", "--no-merges", "-z", f"--max-count={limit}", "--format=%h %B", f"{since}..{tip}"]
    return [text.strip() for text in run_git(repo.main, *args).stdout.split("\0") if text.strip()]


def merge_base(repo: RepoPaths, a: str, b: str) -> str | None:
    proc = run_git(repo.main, "merge-base", a, b, ok=(0, 1))
    return proc.stdout.strip() or None


def put_back(worktree: Path, branch: str, head: str, before: str, now: str) -> None:
    """Put a worktree back as recovery commit `before` saved it, the branch at `head`, from the state recovery
    commit `now` saved a moment ago: no merge in progress, every file as it was (those added since deleted),
    the index at `head` as a recovery ref leaves it. No `reset --hard`: only the files that differ are written.
    """
    run_git(worktree, *NO_HOOKS, "merge", "--quit", ok=(0, 128))  # forget MERGE_HEAD; files and index stay
    apply_snapshot(worktree, before, since=now)
    tip = run_git(worktree, "rev-parse", "HEAD").stdout.strip()
    if tip != head:  # the resolver committed: take the branch back, compare-and-swap
        run_git(worktree, "update-ref", "-m", "mux merge --abort-resolve", f"refs/heads/{branch}", head, tip)
    run_git(worktree, "read-tree", head)


def uncommit(worktree: Path, branch: str, head: str, commit: str) -> bool:
    """Take back `commit_all`'s `commit` on `branch` (checked out in `worktree`), whose parent is `head`: the branch
    back at `head` (compare-and-swap), the index at `head`, every file left as it is now. False, changing nothing,
    when the branch has moved on from `commit` since."""
    moved = run_git(worktree, "update-ref", "-m", "mux: uncommit", f"refs/heads/{branch}", head, commit, ok=(0, 1, 128))
    if moved.returncode:
        return False
    run_git(worktree, "read-tree", head)
    return True


def sync_in_worktree(worktree: Path, onto: str, label: str, rebase: bool) -> list[str]:
    """Merge (or rebase onto) `onto` inside the task's worktree; [] when clean, else the paths left conflicting.

    On a conflict git's own state (MERGE_HEAD, rebase-merge/) stays for the agent to resolve. Any other failure
    (local changes in the way) is raised with git's words, and git has changed nothing.
    """
    if rebase:
        args = [*NO_HOOKS, *_REBASE_SAFE, "rebase", "--no-autostash", "--no-update-refs", "-q", onto]
    else:
        args = [*NO_HOOKS, "merge", "--no-autostash", "--no-edit", "--no-stat", "-q", "-m", f"Merge {label}", onto]
    proc = run_git(worktree, *args, env={"GIT_EDITOR": "true"}, ok=(0, 1, 128))
    if proc.returncode == 0:
        return []
    if in_progress(worktree) is not None:
        return unmerged_paths(worktree) or ["(see `git status` in the worktree)"]
    raise GitError(f"git {'rebase' if rebase else 'merge'} {label} failed: {error_line(proc.stderr + proc.stdout)}")
