"""The repository and its refs: discover it from any folder, RepoPaths, branches, commits, in-progress operations."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from muxagent.errors import GitError, NotARepoError
from muxagent.git.runner import error_line, run_git


@dataclass(frozen=True)
class RepoPaths:
    main: Path  # the main worktree, resolved
    common_dir: Path  # the git common dir (e.g. main/.git), resolved


def short_ref(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


_WHERE = ("rev-parse", "--path-format=absolute", "--git-common-dir", "--git-dir", "--show-toplevel")


def discover(cwd: Path) -> RepoPaths:
    """Find the repo from the main checkout, any subdirectory, a linked worktree or the git dir itself."""
    try:
        # C locale: the "not a git repository" test below reads git's message.
        proc = run_git(cwd, *_WHERE, env={"LC_ALL": "C"}, ok=(0, 128))
    except GitError as exc:
        raise NotARepoError(f"not a git repository: {cwd}") from exc
    if "not a git repository" in proc.stderr:
        raise NotARepoError(f"not a git repository: {cwd}")
    lines = proc.stdout.splitlines()
    common_dir = Path(lines[0]).resolve() if lines else None
    if proc.returncode == 0 and len(lines) == 3 and Path(lines[1]).resolve() == common_dir:
        return RepoPaths(main=Path(lines[2]).resolve(), common_dir=common_dir)
    if common_dir is None:
        raise GitError(f"git rev-parse failed in {cwd}: {error_line(proc.stderr)}")
    # In a linked worktree, a bare repo or the git dir itself: git lists the main worktree first.
    main = worktree_records(cwd)[0]
    if "bare" in main:
        raise NotARepoError(f"{common_dir} is a bare repository: mux needs a main checkout to work from")
    main_path: Path | None = Path(main["worktree"]).resolve()
    if main_path == common_dir:
        # `--separate-git-dir`: the git dir does not record where its main checkout is; a task's pane does.
        main_path = _main_checkout_named(os.environ.get("MUX_REPO"), common_dir)
    if main_path is None:
        raise NotARepoError(f"cannot find the main checkout of {common_dir} from {cwd}: run mux from there")
    return RepoPaths(main=main_path, common_dir=common_dir)


def _main_checkout_named(named: str | None, common_dir: Path) -> Path | None:
    """`named` (MUX_REPO, which every task's pane has), resolved, if it is the main checkout of `common_dir`."""
    if not named:
        return None
    try:
        lines = run_git(Path(named), *_WHERE).stdout.splitlines()
    except GitError:
        return None
    if len(lines) == 3 and Path(lines[0]).resolve() == Path(lines[1]).resolve() == common_dir:
        return Path(lines[2]).resolve()
    return None


def current_branch(worktree: Path) -> str | None:
    proc = run_git(worktree, "symbolic-ref", "-q", "HEAD", ok=(0, 1))
    return short_ref(proc.stdout.strip()) if proc.returncode == 0 else None


def resolve_commit(repo: RepoPaths, ref: str) -> str:
    proc = run_git(repo.main, "rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}", ok=(0, 1))
    if proc.returncode != 0:
        raise GitError(f"base ref '{ref}' does not exist")
    return proc.stdout.strip()


def branch_exists(repo: RepoPaths, branch: str) -> bool:
    return branch_tip(repo, branch) is not None


def worktree_records(cwd: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain -z` as one {attribute: value} dict per worktree."""
    out = run_git(cwd, "worktree", "list", "--porcelain", "-z").stdout
    records = []
    for block in out.split("\0\0"):
        fields = [f.partition(" ") for f in block.strip("\0").split("\0") if f]
        if fields:
            records.append({key: value for key, _, value in fields})
    return records


def delete_branch(repo: RepoPaths, branch: str) -> None:
    """`git branch -D`; git itself refuses a branch checked out (or being rebased) in any worktree."""
    run_git(repo.main, "branch", "-D", "--", branch)


# Files git leaves in a worktree's git dir while a multi-step operation waits for the user.
_IN_PROGRESS = (
    ("MERGE_HEAD", "merge"),
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase or am"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
    ("BISECT_LOG", "bisect"),
)


def git_dir(worktree: Path) -> Path:
    """The worktree's own git dir (main: .git; linked: .git/worktrees/ID), read from disk without running git."""
    dot_git = worktree / ".git"
    if dot_git.is_file():
        text = dot_git.read_text(encoding="utf-8", errors="surrogateescape").strip()
        target = Path(text.removeprefix("gitdir:").strip())
        return target if target.is_absolute() else (worktree / target).resolve()
    return dot_git


def in_progress(worktree: Path) -> str | None:
    """The operation (merge, rebase, ...) that `worktree` is in the middle of, or None."""
    directory = git_dir(worktree)
    for name, what in _IN_PROGRESS:
        if (directory / name).exists():
            return what
    return None


def head_of(worktree: Path) -> tuple[str | None, str | None]:
    """(HEAD commit, branch short name or None when detached) of a worktree."""
    head = run_git(worktree, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip() or None
    return head, current_branch(worktree)


def branch_tip(repo: RepoPaths, branch: str) -> str | None:
    proc = run_git(repo.main, "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}", ok=(0, 1))
    return proc.stdout.strip() if proc.returncode == 0 else None


def is_ancestor(repo: RepoPaths, ancestor: str, descendant: str) -> bool:
    return run_git(repo.main, "merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1)).returncode == 0


def ref_tips(repo: RepoPaths) -> dict[str, str]:
    """Full ref name -> commit for every branch and tag (annotated tags peeled), in one git call."""
    fmt = "%(refname)%00%(objectname)%00%(*objectname)"
    out = run_git(repo.main, "for-each-ref", f"--format={fmt}", "refs/heads/", "refs/tags/").stdout
    tips = {}
    for line in out.splitlines():
        ref, _, rest = line.partition("\0")
        commit, _, peeled = rest.partition("\0")
        tips[ref] = peeled or commit
    return tips


def refs_stamp(repo: RepoPaths) -> tuple[tuple[str, int, int], ...]:
    """What moves whenever a branch or tag does, from stat calls alone (no git process): each loose ref file (git
    renames a new file over it, so its inode changes even within one tick of the file system's clock) and
    `packed-refs`."""
    # Strings and scandir, not Path objects and os.walk: a hundred branches are stamped every monitor tick.
    common = os.fspath(repo.common_dir)
    paths = [os.path.join(common, "packed-refs")]
    folders = [os.path.join(common, "refs", "heads"), os.path.join(common, "refs", "tags")]
    while folders:
        with contextlib.suppress(OSError), os.scandir(folders.pop()) as found:
            for entry in found:
                (folders if entry.is_dir(follow_symlinks=False) else paths).append(entry.path)
    stamp = []
    for path in paths:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            stamp.append((path, info.st_ino, info.st_mtime_ns))
    return tuple(stamp)


def tree_of(repo: RepoPaths, commit: str) -> str:
    return run_git(repo.main, "rev-parse", f"{commit}^{{tree}}").stdout.strip()
