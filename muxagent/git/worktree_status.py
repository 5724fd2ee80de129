"""What a worktree holds: the one porcelain-v2 `git status` parser, scans, change counts and dirty paths.

A worktree whose checkout is pending is read against a scratch index of HEAD (`work_index`), never its own."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from muxagent.git.runner import NO_HOOKS, run_git
from muxagent.git.worktrees import checkout_pending, not_checked_out, require_checkout

# Ignored directories that a build or an installer recreates: losing them loses no work.
_CACHE_DIRS = frozenset(
    {
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "node_modules",
        ".venv",
        "venv",
        "target",
        "build",
        "dist",
        ".tox",
        ".next",
        ".cache",
    }
)

# git's own binary test: a NUL byte in the first 8000 bytes.
_BINARY_PROBE = 8000


@dataclass(frozen=True)
class Status:
    head: str | None  # None before the first commit (or when `git status` ran without --branch)
    branch: str | None  # None when detached
    tracked: list[str]
    untracked: list[str]
    ignored: list[str]
    dirty_submodules: list[str]  # with uncommitted or untracked files inside


@contextmanager
def work_index(worktree: Path) -> Iterator[dict[str, str] | None]:
    """The index to read a worktree's work against: its own (None), or while its checkout is pending (no index
    yet) a scratch one of HEAD, so that what someone put there shows as a change and the files the checkout has
    not written yet do not show as deletions."""
    if not checkout_pending(worktree):
        yield None
        return
    with scratch_index(worktree) as env:
        yield env


def read_status(worktree: Path, *, ignored: bool = False, env: Mapping[str, str] | None = None) -> Status:
    """`git status` of the worktree; a worktree whose checkout is pending needs `env` from `work_index`."""
    pending = checkout_pending(worktree)
    if pending and env is None:
        raise not_checked_out(worktree)
    args = ["status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all"]
    if ignored:
        args.append("--ignored=matching")
    return parse_porcelain_v2(run_git(worktree, *args, env=env).stdout, pending=pending)


def parse_porcelain_v2(out: str, *, pending: bool = False) -> Status:
    """The one reader of `git status --porcelain=v2 -z` output. `pending`: the worktree's checkout is pending,
    so a file missing from it is not checked out yet rather than deleted."""
    records = iter(out.split("\0"))
    head: str | None = None
    branch: str | None = None
    tracked: list[str] = []
    untracked: list[str] = []
    ignored: list[str] = []
    dirty_submodules: list[str] = []
    for record in records:
        kind, _, rest = record.partition(" ")
        if kind == "#":
            key, _, value = rest.partition(" ")
            if key == "branch.oid" and value != "(initial)":
                head = value
            elif key == "branch.head" and value != "(detached)":
                branch = value
        elif kind in ("1", "2"):
            if kind == "1" and pending and rest.startswith(".D "):
                continue  # not checked out yet
            fields = rest.split(" ", 7 if kind == "1" else 8)
            tracked.append(fields[-1])
            if kind == "2":
                next(records)  # a rename's original path, one more NUL-terminated field
            sub = fields[1]  # "N..." for a file, "S<commit><modified><untracked>" for a submodule
            if sub.startswith("S") and (sub[2] == "M" or sub[3] == "U"):
                dirty_submodules.append(fields[-1])
        elif kind == "u":
            tracked.append(rest.split(" ", 9)[9])
        elif kind == "?":
            untracked.append(rest)
        elif kind == "!":
            ignored.append(rest)
    return Status(head, branch, tracked, untracked, ignored, dirty_submodules)


def _cache_folders(path: str) -> list[str]:
    """The folders of `path` (itself too when it ends in /) named like a cache, each as `a/b/`."""
    parts = path.split("/")[:-1]  # "a/b/" -> ["a", "b"]; "a/f" -> ["a"]
    return [
        "/".join(parts[: i + 1]) + "/"
        for i, part in enumerate(parts)
        if part in _CACHE_DIRS or part.endswith(".egg-info")
    ]


def _is_cache(path: str, ignored_folder: str | None, confirmed: set[str]) -> bool:
    """True for an ignored path a build recreates: a `.pyc`, or a path inside a folder named like a cache
    (_CACHE_DIRS) that is itself ignored. That is every folder at or below `ignored_folder` (the folder git
    reported as ignored as a whole, None for a file it reported alone), and those above it that are in
    `confirmed`. A tracked `build/` with an ignored `build/signing.local` holds work, not a cache."""
    if path.endswith((".pyc", ".pyo")):
        return True
    below = ignored_folder or "\0"  # no folder name starts with NUL
    return any(folder.startswith(below) or folder in confirmed for folder in _cache_folders(path))


def _ignored_cache_folders(worktree: Path, ignored: list[str], env: Mapping[str, str] | None) -> set[str]:
    """The folders named like a cache above the ignored paths git reported that are themselves ignored."""
    above = {folder for path in ignored for folder in _cache_folders(path) if folder != path}
    if not above:
        return set()
    # --no-index: a folder holding tracked files is ignored all the same when a pattern matches it.
    args = ["check-ignore", "--no-index", "-z", "--stdin"]
    out = run_git(worktree, *args, env=env, stdin="\0".join(sorted(above)) + "\0", ok=(0, 1)).stdout
    return {path for path in out.split("\0") if path}


def precious_ignored(worktree: Path, status: Status, env: Mapping[str, str] | None = None) -> list[str]:
    """Ignored files that are work (`.env`, a local database), each named: directories are listed out."""
    confirmed = _ignored_cache_folders(worktree, status.ignored, env)
    keep = [p for p in status.ignored if not _is_cache(p, p if p.endswith("/") else None, confirmed)]
    files = [p for p in keep if not p.endswith("/")]
    dirs = [p for p in keep if p.endswith("/")]
    if dirs:
        # Status names an ignored directory once; its files are what would be lost, minus nested caches.
        args = ["--literal-pathspecs", "ls-files", "-z", "--others", "--ignored", "--exclude-standard"]
        out = run_git(worktree, *args, "--", *dirs, env=env).stdout
        for path in filter(None, out.split("\0")):
            folder = next((d for d in dirs if path.startswith(d)), None)
            if not _is_cache(path, folder, confirmed):
                files.append(path)
    return sorted(files)


def count_lines(path: Path) -> int:
    """Lines an untracked file adds, as `git diff --numstat` would count them: 0 for binary files."""
    try:
        if path.is_symlink():
            return 1  # git diffs a symlink as one line: its target
        with path.open("rb") as fh:
            head = fh.read(_BINARY_PROBE)
            if b"\0" in head:
                return 0
            lines = head.count(b"\n")
            last = head[-1:]
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return 0  # vanished or unreadable between `git status` and now: nothing countable
    return lines + (1 if last not in (b"", b"\n") else 0)


@dataclass(frozen=True)
class Scan:
    """One `git status` of a worktree, with a digest that changes whenever an uncommitted file does."""

    head: str | None
    branch: str | None
    tracked: tuple[str, ...]  # uncommitted changes to tracked files
    untracked: tuple[str, ...]
    fingerprint: str  # HEAD plus the name and stat data of every path above


def scan(worktree: Path) -> Scan:
    """Same fingerprint, same files on disk (to the nanosecond mtime): lets callers reuse what they derived."""
    status = read_status(worktree)
    digest = hashlib.sha1((status.head or "").encode())
    for path in sorted({*status.tracked, *status.untracked}):
        try:
            st = os.lstat(worktree / path)
            stat = f"{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_size}\0{st.st_mode}"
        except OSError:
            stat = "-"
        digest.update(f"{path}\0{stat}\n".encode(errors="surrogateescape"))
    return Scan(status.head, status.branch, tuple(status.tracked), tuple(status.untracked), digest.hexdigest())


def numstat(worktree: Path, base: str) -> tuple[int, int, list[str]]:
    """(lines added, lines removed, paths touched) in the worktree, staged or not, against merge-base(base, HEAD).

    A rename names both its paths. Untracked files are not included: see count_lines().
    """
    require_checkout(worktree)
    out = run_git(
        worktree,
        "diff",
        "--numstat",
        "-z",
        "--no-ext-diff",
        "--no-textconv",
        "--merge-base",
        "--end-of-options",
        base,
    ).stdout
    added = removed = 0
    paths = []
    fields = iter(out.split("\0"))
    for field in fields:
        if not field:
            continue
        plus, minus, path = field.split("\t", 2)
        if path:
            paths.append(path)
        else:  # a rename: the old and new paths follow as two more fields
            paths += [next(fields), next(fields)]
        if plus != "-":  # "-" marks a binary file, which has no lines
            added += int(plus)
            removed += int(minus)
    return added, removed, paths


def ahead_behind(cwd: Path, base: str, tip: str) -> tuple[int, int]:
    """(commits in `tip` not in `base`, commits in `base` not in `tip`)."""
    counts = run_git(cwd, "rev-list", "--left-right", "--count", "--end-of-options", f"{base}...{tip}").stdout
    behind, ahead = (int(n) for n in counts.split())
    return ahead, behind


@contextmanager
def scratch_index(worktree: Path) -> Iterator[dict[str, str]]:
    """Env pointing git at a throwaway copy of the worktree's index (of HEAD while its checkout is pending), so
    the real one is never written."""
    real = Path(run_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="mux-index-") as tmp:
        scratch = Path(tmp) / "index"
        env = {"GIT_INDEX_FILE": str(scratch)}
        # Starting from the real index keeps its stat data, so `git add` re-reads only changed files. copy2 keeps
        # the index's mtime too: git re-reads files modified in the same second as the index was written ("racy
        # git"), and a fresh mtime would hide a same-size edit made in that second from the snapshot.
        if real.exists():
            shutil.copy2(real, scratch)
        elif checkout_pending(worktree):
            run_git(worktree, *NO_HOOKS, "read-tree", "HEAD", env=env)
        yield env


def is_regular_file(path: Path) -> bool:
    try:
        return S_ISREG(os.lstat(path).st_mode)
    except OSError:  # deleted: `add -A` recorded that already
        return False


def nested_repositories(worktree: Path) -> list[str]:
    """Untracked folders of the worktree that are git repositories of their own (what an agent's `git clone` or
    `git init` leaves), without the trailing /: `git add` would commit each as a bare gitlink."""
    with work_index(worktree) as env:
        status = read_status(worktree, env=env)
    return [path.rstrip("/") for path in status.untracked if path.endswith("/")]


def dirty_paths(worktree: Path) -> set[str]:
    """Every path with local state a checkout could overwrite: staged, modified, untracked, precious ignored, and
    edits `git status` does not show (see hidden_edits)."""
    status = read_status(worktree, ignored=True)
    return {*status.tracked, *status.untracked, *precious_ignored(worktree, status), *hidden_edits(worktree)}


def hidden_edits(worktree: Path) -> list[str]:
    """Files marked assume-unchanged or skip-worktree whose bytes differ from the index: `git status` takes them
    as unchanged, but `git merge` refuses to overwrite them, and did so only after mux had committed the task."""
    flagged: dict[str, str] = {}  # path -> blob in the index
    for entry in run_git(worktree, "ls-files", "-v", "-s", "-z").stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        tag, _, rest = meta.partition(" ")
        # A lower-case tag marks assume-unchanged, S skip-worktree; a sparse checkout's absent files are not edits.
        if (tag.islower() or tag == "S") and is_regular_file(worktree / path):
            flagged[path] = rest.split(" ")[1]
    if not flagged:
        return []
    paths = list(flagged)
    now = run_git(worktree, "hash-object", "--", *paths).stdout.split()
    return [path for path, blob in zip(paths, now, strict=True) if blob != flagged[path]]


def has_changes(worktree: Path) -> bool:
    """Uncommitted or untracked files (ignored ones not counted): what `git add -A` would commit."""
    status = read_status(worktree)
    return bool(status.tracked or status.untracked)


def dirty_submodules(worktree: Path) -> list[str]:
    """Submodules with uncommitted or untracked files inside: work no superproject commit or snapshot can hold."""
    out = run_git(worktree, "status", "--porcelain=v2", "-z", "--untracked-files=all").stdout
    return parse_porcelain_v2(out).dirty_submodules
