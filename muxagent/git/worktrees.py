"""Linked worktrees: list, add (with the checkout left to the task's window), remove, and who uses a branch."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeGuard

from muxagent.errors import BranchExistsError, CheckoutPendingError, GitError
from muxagent.git.repository import (
    RepoPaths,
    branch_exists,
    delete_branch,
    git_dir,
    resolve_commit,
    short_ref,
    worktree_records,
)
from muxagent.git.runner import ANY_EXIT, NO_HOOKS, run_git


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None
    branch: str | None  # short name, e.g. "mux/foo"; None when detached
    locked: bool
    prunable: bool


def list_worktrees(repo: RepoPaths) -> list[WorktreeInfo]:
    """Every worktree of the repo, the main one first."""
    found = [_worktree_info(record) for record in worktree_records(repo.main)]
    if found and Path(os.path.realpath(found[0].path)) == repo.common_dir:
        # `--separate-git-dir`: git names the git dir as the main worktree, and `mux merge` would take the main
        # checkout's branch for one checked out somewhere else, and refuse every merge.
        found[0] = replace(found[0], path=repo.main)
    return found


def included_untracked(main: Path, patterns_file: Path) -> list[str]:
    """Untracked paths of the main checkout that match the gitignore-style patterns in `patterns_file` AND are
    gitignored (Claude Code's `.worktreeinclude` rule: it only brings over files a checkout cannot have).
    Folders that match as a whole come as one path ending in `/`."""
    listed = run_git(main, "ls-files", "-z", "--others", "--ignored", "--directory", f"--exclude-from={patterns_file}")
    paths = [path for path in listed.stdout.split("\0") if path]
    if not paths:
        return []
    # check-ignore exits 1 when none of them is ignored.
    ignored = run_git(main, "check-ignore", "-z", "--stdin", stdin="\0".join(paths) + "\0", ok=(0, 1))
    return sorted({path for path in ignored.stdout.split("\0") if path})


def _worktree_info(record: Mapping[str, str]) -> WorktreeInfo:
    head = record.get("HEAD", "")
    branch = record.get("branch")
    return WorktreeInfo(
        path=Path(record["worktree"]),
        head=head if head.strip("0") else None,  # all zeros: a branch with no commit yet
        branch=short_ref(branch) if branch else None,
        locked="locked" in record,
        prunable="prunable" in record,
    )


# In a worktree's git dir while its files are not checked out yet: `mux new` leaves the checkout to the task's
# window (see `pane_command`), which deletes the marker once the files are there.
CHECKOUT_PENDING = "mux-checkout-pending"


def add_worktree(repo: RepoPaths, path: Path, branch: str, start: str, *, checkout: bool = True) -> None:
    """Create `branch` at `start` (a branch, tag or commit) and a new worktree for it at `path`.

    Without `checkout` the worktree gets no files and no index yet, only the CHECKOUT_PENDING marker: the first
    `pane_command` run in it checks the files out.

    All or none: git makes the branch before the worktree, so a failure after it (a folder it cannot write, a
    failing post-checkout hook) left the branch behind, and the task's name dead ("branch already exists"). Since
    neither the branch nor the path existed before, whatever is there after a failure is taken back.
    """
    if os.path.lexists(path):
        raise GitError(f"path already exists: {path}")
    if branch_exists(repo, branch):
        raise BranchExistsError(f"branch '{branch}' already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.parent.resolve() / path.name
    # Parallel checkout (one worker per core): a worktree of a few thousand files is ready in half the time. The
    # post-checkout hook runs after, on its own, so that its failure is told apart from git's.
    mode = "--checkout" if checkout else "--no-checkout"
    args = [*NO_HOOKS, "-c", "checkout.workers=0", "worktree", "add", mode, "-b", branch, "--", str(target), start]
    try:
        run_git(repo.main, *args)
        if checkout:
            _run_post_checkout(target)
    except GitError:
        _discard_failed_add(repo, target, branch)
        resolve_commit(repo, start)
        raise
    if not checkout:
        (git_dir(target) / CHECKOUT_PENDING).touch()


def _run_post_checkout(worktree: Path) -> None:
    """The post-checkout hook, as `git worktree add` runs it (husky, lefthook); GitError with its last words."""
    head = run_git(worktree, "rev-parse", "HEAD").stdout.strip()
    hook = run_git(worktree, "hook", "run", "--ignore-missing", "post-checkout", "--", "0" * 40, head, "1", ok=ANY_EXIT)
    if hook.returncode:
        said = [line.strip() for line in (hook.stderr or hook.stdout).splitlines() if line.strip()]
        raise GitError(f"the post-checkout hook failed (exit {hook.returncode}): {said[-1] if said else 'no message'}")


def _discard_failed_add(repo: RepoPaths, target: Path, branch: str) -> None:
    """Take back what a failed `git worktree add` made (its caller checked that neither existed before)."""
    if any(Path(os.path.realpath(w.path)) == target for w in list_worktrees(repo)):
        run_git(repo.main, "worktree", "remove", "--force", "--", str(target), ok=ANY_EXIT)
    if os.path.lexists(target):
        shutil.rmtree(target, ignore_errors=True)
    run_git(repo.main, "worktree", "prune")
    if branch_exists(repo, branch):
        delete_branch(repo, branch)


def tracked_at_head(worktree: Path, paths: Sequence[str]) -> set[str]:
    """Which of `paths` (relative to the worktree's root) HEAD has, as a file or a folder."""
    out = run_git(worktree, "--literal-pathspecs", "ls-tree", "-z", "--name-only", "HEAD", "--", *paths).stdout
    return {path for path in out.split("\0") if path}


# A worktree's `.git` file (as its size, mtime and inode) -> the git dir it names. The monitor asks checkout_pending
# for every task two or three times a tick: reading each `.git` file again (an open, a read, a close through
# Python's io) was a fifth of a quiet tick's CPU at 100 tasks; a stat finds a file changed as surely.
_LINKS: dict[str, tuple[tuple[int, int, int], str]] = {}


def checkout_pending(worktree: str | os.PathLike[str]) -> bool:
    """Whether the worktree still waits for the checkout its window does: its files and index are not there yet,
    so git would read it as every file deleted."""
    # Asked for every task on every `mux ls` and monitor tick: plain os calls, a third of git_dir's cost.
    dot_git = os.path.join(worktree, ".git")
    try:
        info = os.stat(dot_git)
        version = (info.st_size, info.st_mtime_ns, info.st_ino)
        known = _LINKS.get(dot_git)
        if known is not None and known[0] == version:
            link = known[1]
        else:
            # surrogateescape: a repo path that is not UTF-8 must name the same folder, not one with U+FFFD in it.
            with open(dot_git, encoding="utf-8", errors="surrogateescape") as file:
                link = file.read().removeprefix("gitdir:").strip()
            _LINKS[dot_git] = (version, link)
    except OSError:  # no worktree, or a main checkout's .git folder
        return False
    return os.path.exists(os.path.join(worktree, link, CHECKOUT_PENDING))


# Run by `sh -c` in the task's window before the agent: $1 is the worktree's CHECKOUT_PENDING marker, the agent's
# argv follows. The checkout says what it does, with git's progress on a long one, and refuses to overwrite a file
# someone put there meanwhile (it fails whole, and the window says which file); the post-checkout hook gets what
# `git worktree add` gives it (null oid, HEAD, 1). Once done the screen is cleared: the agent starts on a blank
# one, as `mux ls` expects of an agent still drawing its first frame.
# The index refresh settles a fresh checkout's "racily clean" index, which would make every read-only
# `git status` re-read the files (and wake every watcher); here it cannot race the agent for the index lock.
_PANE_PRELUDE = """\
if [ -e "$1" ]; then
  echo "mux: checking out $(git rev-parse --abbrev-ref HEAD)"
  git -c checkout.workers=0 read-tree -v -m -u HEAD || { echo "mux: the checkout failed (see above)" >&2; exit 1; }
  rm -f "$1"
  git hook run --ignore-missing post-checkout -- 0000000000000000000000000000000000000000 "$(git rev-parse HEAD)" 1
  printf '\\033[H\\033[2J'
fi
git update-index -q --refresh >/dev/null 2>&1
shift
exec "$@"
"""


def pane_command(worktree: Path, argv: Sequence[str]) -> list[str]:
    """`argv`, preceded in the same process by the worktree's pending checkout (if any) and an index refresh."""
    return ["sh", "-c", _PANE_PRELUDE, "sh", str(git_dir(worktree) / CHECKOUT_PENDING), *argv]


def remove_worktree(repo: RepoPaths, path: Path) -> None:
    """Delete a linked worktree, dirty or not; the caller has already saved what it holds."""
    real = Path(os.path.realpath(path))
    if real == repo.main:
        raise GitError(f"refusing to remove the main worktree: {path}")
    linked = {Path(os.path.realpath(w.path)): w for w in list_worktrees(repo)[1:]}
    entry = linked.get(real)
    if entry is None:
        raise GitError(f"not a linked worktree of {repo.main}: {path}")
    if entry.locked:
        raise GitError(f"worktree is locked: {path} (run `git worktree unlock` on it first)")
    if real.is_dir():
        run_git(repo.main, "worktree", "remove", "--force", "--", str(entry.path))
    else:
        # Deleted by hand: only git's bookkeeping is left, and `remove` refuses a missing directory.
        run_git(repo.main, "worktree", "prune")


def worktree_present(worktree: Path | None) -> TypeGuard[Path]:
    return worktree is not None and worktree.is_dir()


def require_checkout(worktree: Path) -> None:
    """CheckoutPendingError while the worktree's files are not checked out yet."""
    if checkout_pending(worktree):
        raise not_checked_out(worktree)


def not_checked_out(worktree: Path) -> CheckoutPendingError:
    return CheckoutPendingError(
        f"{worktree} has no files yet: its task's window checks them out before the agent starts (see `mux ls`)"
    )


def branch_users(repo: RepoPaths, branch: str) -> list[tuple[Path, str]]:
    """(worktree, how) for every worktree that has `branch` checked out, or is rebasing or bisecting it.

    Paths are resolved, so they compare equal to RepoPaths.main.
    """
    users: list[tuple[Path, str]] = []
    full = f"refs/heads/{branch}"
    for wt in list_worktrees(repo):
        path = Path(os.path.realpath(wt.path))
        if wt.branch == branch:
            users.append((path, "checked out"))
            continue
        if not path.is_dir():
            continue
        directory = git_dir(path)
        for sub in ("rebase-merge", "rebase-apply"):
            head_name = directory / sub / "head-name"
            if head_name.is_file() and head_name.read_text(encoding="utf-8").strip() == full:
                users.append((path, "being rebased"))
        start = directory / "BISECT_START"
        if start.is_file() and start.read_text(encoding="utf-8").strip() in (branch, full):
            users.append((path, "being bisected"))
    return users
