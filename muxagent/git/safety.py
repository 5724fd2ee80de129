"""Lost-work checks: what removing a task would lose, named in phrases for the refusal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from muxagent.git.repository import RepoPaths, branch_tip, resolve_commit
from muxagent.git.runner import NAMES_SHOWN, run_git
from muxagent.git.worktree_status import hidden_edits, precious_ignored, read_status, work_index
from muxagent.git.worktrees import worktree_present


def _phrase(count: int, noun: str, paths: Sequence[str] = ()) -> str:
    text = f"{count} {noun}{'' if count == 1 else 's'}"
    if paths:
        shown = ", ".join(paths[:NAMES_SHOWN]) + (", ..." if len(paths) > NAMES_SHOWN else "")
        text += f" ({shown})"
    return text


def _unmerged_commits(repo: RepoPaths, tip: str, base: str) -> int:
    """Commits up to `tip` whose changes `base` lacks: 0 when merged, squash-merged or cherry-picked."""
    base_commit = resolve_commit(repo, base)
    # Merging the branch would change nothing: covers fast-forwards, real merges and squash merges.
    merged = run_git(repo.main, "merge-tree", "--write-tree", base_commit, tip, ok=(0, 1, 128))
    if merged.returncode == 0:
        base_tree = run_git(repo.main, "rev-parse", f"{base_commit}^{{tree}}").stdout.strip()
        if merged.stdout.split("\n", 1)[0] == base_tree:
            return 0
    # Base moved on over the same lines (the merge conflicts): fall back to per-commit patch identity, as
    # `git cherry` does, but keep merge commits counted, since their resolutions exist nowhere else.
    out = run_git(repo.main, "rev-list", "--count", "--right-only", "--cherry-pick", f"{base_commit}...{tip}")
    return int(out.stdout)


def unsaved_work(repo: RepoPaths, worktree: Path | None, branch: str, base: str) -> list[str]:
    """Phrases naming what removing the task would lose; [] when nothing would be lost.

    A worktree that no longer exists on disk holds nothing more to lose, so it is treated like None.
    """
    found: list[str] = []
    if worktree_present(worktree):
        with work_index(worktree) as env:
            status = read_status(worktree, ignored=True, env=env)
            precious = precious_ignored(worktree, status, env)
        if status.tracked:
            found.append(_phrase(len(status.tracked), "uncommitted change", status.tracked))
        nested = [path for path in status.untracked if path.endswith("/")]
        untracked = [path for path in status.untracked if not path.endswith("/")]
        if untracked:
            found.append(_phrase(len(untracked), "untracked file", untracked))
        if nested:
            found.append(_phrase(len(nested), "nested git repo", nested))  # a clone or `git init`
        if precious:
            found.append(_phrase(len(precious), "ignored file", precious))
        hidden = hidden_edits(worktree)
        if hidden:
            found.append(_phrase(len(hidden), "edit", hidden) + " git status hides (assume-unchanged, skip-worktree)")
        if status.branch is None and status.head is not None:
            lost = run_git(
                worktree, "rev-list", "--count", status.head, "--not", "--branches", "--tags", "--remotes"
            ).stdout
            if int(lost):
                found.append(_phrase(int(lost), "commit") + " on a detached HEAD, not on any branch")
    tip = branch_tip(repo, branch)
    if tip is None:
        return found
    base_found = run_git(repo.main, "rev-parse", "--verify", "-q", "--end-of-options", f"{base}^{{commit}}", ok=(0, 1))
    if base_found.returncode:
        # The base is gone (a stacked task's parent merged and removed, a renamed branch): what no other ref holds
        # is what would be lost. Asking for the base itself made `rm --force` and every `clean` fail.
        # (--exclude before --branches takes the name without refs/heads/.)
        only_here = run_git(
            repo.main, "rev-list", "--count", tip, "--not", f"--exclude={branch}", "--branches", "--tags", "--remotes"
        ).stdout
        if int(only_here):
            found.append(_phrase(int(only_here), "commit") + f" on no other branch (its base {base} is gone)")
        return found
    ahead = _unmerged_commits(repo, tip, base)
    if ahead:
        found.append(_phrase(ahead, "commit") + f" not in {base}")
    return found
