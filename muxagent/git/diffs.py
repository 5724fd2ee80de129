"""A task's changes, as `mux diff` shows them."""

from __future__ import annotations

from pathlib import Path

from muxagent.git.repository import RepoPaths
from muxagent.git.runner import run_git
from muxagent.git.worktree_status import nested_repositories, scratch_index
from muxagent.git.worktrees import require_checkout


def diff(worktree: Path, base: str, stat: bool = False, color: bool = False) -> str:
    """The task's changes against merge-base(base, HEAD): committed, uncommitted, and untracked files as new.

    Untracked files are marked intent-to-add in a scratch copy of the index, never in the real one.
    """
    require_checkout(worktree)
    # A repository of its own is no file of the task's (and `add` fails on one with no commit yet).
    apart = [f":(exclude,literal){path}" for path in nested_repositories(worktree)]
    with scratch_index(worktree) as env:
        run_git(worktree, "add", "--sparse", "--intent-to-add", "--", ".", *apart, env=env)
        args = ["diff", "--stat" if stat else "--patch", f"--color={'always' if color else 'never'}"]
        return run_git(worktree, *args, "--merge-base", "--end-of-options", base, env=env).stdout


def changed_paths(repo: RepoPaths, old: str, new: str) -> list[str]:
    """Paths that differ between two commits (renames as a delete plus an add)."""
    out = run_git(repo.main, "diff", "--name-only", "--no-renames", "-z", old, new).stdout
    return [p for p in out.split("\0") if p]


def between(repo: RepoPaths, old: str, new: str, color: bool = False) -> str:
    """The patch from commit `old` to commit `new`."""
    args = ["diff", "--patch", f"--color={'always' if color else 'never'}", "--end-of-options", old, new]
    return run_git(repo.main, *args).stdout
