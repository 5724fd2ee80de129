"""Helpers shared by the merge, sync, restore, fault and invariant tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from conftest import git, new_task


def start(repo: Path, name: str, *args: str) -> Path:
    """`mux new NAME -a fake`, checked out; returns the task's worktree."""
    return new_task(repo, name, "-a", "fake", *args)


def commit_file(cwd: Path, path: str, text: str, message: str | None = None) -> str:
    target = cwd / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(cwd, "add", "--", path)
    git(cwd, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", message or f"edit {path}")
    return git(cwd, "rev-parse", "HEAD").strip()


def refs(repo: Path) -> str:
    """Every ref but the checkpoints: the monitor writes one whenever a task's turn ends, whatever command runs
    meanwhile (a family test caught a child's turn ending while a merge into its parent was being refused)."""
    listed = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines(keepends=True)
    return "".join(line for line in listed if not line.startswith("refs/mux/checkpoints/"))


def tree_digest(root: Path) -> str:
    """Every file under root (but .git) with its bytes, as one digest: 'byte-identical' in one comparison."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):  # top-down, so pruning .git works
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = Path(dirpath, name)
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
    return digest.hexdigest()


def checkout_state(repo: Path) -> tuple[str, ...]:
    """What a refused operation must leave byte-identical: files, index, HEAD, refs, stash, in-progress state."""
    gitdir = Path(git(repo, "rev-parse", "--absolute-git-dir").strip())
    index = (gitdir / "index").read_bytes() if (gitdir / "index").exists() else b""
    return (
        tree_digest(repo),
        hashlib.sha256(index).hexdigest(),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "-q", "HEAD") if (gitdir / "HEAD").read_text().startswith("ref:") else "detached",
        refs(repo),
        git(repo, "stash", "list", "--format=%H %gs"),
        git(repo, "status", "--porcelain=v2", "--ignored"),
    )


def reachable_blobs(repo: Path) -> set[str]:
    """Every blob reachable from any ref (branches, tags, recovery refs)."""
    out = subprocess.run(
        # A path that is not UTF-8 follows each object id: read it as bytes held in surrogates.
        ["git", "rev-list", "--objects", "--all"], cwd=repo, capture_output=True, text=True, check=True,
        errors="surrogateescape",
    ).stdout  # fmt: skip
    ids = [line.split()[0] for line in out.splitlines() if line]
    if not ids:
        return set()
    kinds = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectname) %(objecttype)"],
        cwd=repo,
        input="\n".join(ids) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0] for line in kinds.splitlines() if line.endswith(" blob")}


def blob_id(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
