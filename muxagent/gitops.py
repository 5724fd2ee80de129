"""The one chokepoint for git: discovery, worktrees, branches, change counts, safety checks, recovery refs.

Every call is a plain `git` argv run through `_git`; none goes through a shell. Each runs with
`--no-optional-locks`, so mux reading a task never takes the index lock the agent working there needs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from muxagent.errors import GitError, MuxError, NotARepoError
from muxagent.model import Changes

RECOVERY_PREFIX = "refs/mux/recovery/"

# Variables git exports to hooks. Inherited by mux (an agent may run mux from a hook), they would point every
# command at another repository or index, e.g. the recovery snapshot would write into the agent's real index.
_REPO_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)

# Recovery commits are mux's own snapshots; a fixed identity means they never fail for want of `user.name`.
_MUX_IDENTITY = {
    "GIT_AUTHOR_NAME": "mux",
    "GIT_AUTHOR_EMAIL": "mux@localhost",
    "GIT_COMMITTER_NAME": "mux",
    "GIT_COMMITTER_EMAIL": "mux@localhost",
}

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
_MAX_WORKERS = 8
_NAMES_SHOWN = 3


@dataclass(frozen=True)
class RepoPaths:
    main: Path  # the main worktree, resolved
    common_dir: Path  # the git common dir (e.g. main/.git), resolved


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None
    branch: str | None  # short name, e.g. "mux/foo"; None when detached
    locked: bool
    prunable: bool


@dataclass(frozen=True)
class _Status:
    head: str | None  # None before the first commit
    branch: str | None  # None when detached
    tracked: list[str]
    untracked: list[str]
    ignored: list[str]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update(extra or {})
    return env


def _git(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run git; unless the exit code is in `ok`, raise GitError naming the command and git's first words."""
    argv = ["git", "--no-optional-locks", *args]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except FileNotFoundError as exc:
        what = f"directory does not exist: {cwd}" if not cwd.is_dir() else "git is not installed"
        raise GitError(what) from exc
    except NotADirectoryError as exc:
        raise GitError(f"not a directory: {cwd}") from exc
    if proc.returncode not in ok:
        raise GitError(f"{shlex.join(argv[:1] + argv[2:])} failed: {_first_line(proc.stderr)}")
    return proc


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no error message")


def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


# --- repository and refs ---------------------------------------------------------------------------------


def git_version() -> tuple[int, ...]:
    """The installed git's version as numbers, e.g. (2, 39, 5)."""
    words = _git(Path.cwd(), "version").stdout.split()
    numbers = words[2].split(".") if len(words) > 2 else []
    return tuple(int(n) for n in numbers if n.isdigit())


def discover(cwd: Path) -> RepoPaths:
    """Find the repo from the main checkout, any subdirectory, a linked worktree or the git dir itself."""
    args = ["rev-parse", "--path-format=absolute", "--git-common-dir", "--git-dir", "--show-toplevel"]
    try:
        # C locale: the "not a git repository" test below reads git's message.
        proc = _git(cwd, *args, env={"LC_ALL": "C"}, ok=(0, 128))
    except GitError as exc:
        raise NotARepoError(f"not a git repository: {cwd}") from exc
    if "not a git repository" in proc.stderr:
        raise NotARepoError(f"not a git repository: {cwd}")
    lines = proc.stdout.splitlines()
    common_dir = Path(lines[0]).resolve() if lines else None
    if proc.returncode == 0 and len(lines) == 3 and Path(lines[1]).resolve() == common_dir:
        return RepoPaths(main=Path(lines[2]).resolve(), common_dir=common_dir)
    if common_dir is None:
        raise GitError(f"git rev-parse failed in {cwd}: {_first_line(proc.stderr)}")
    # In a linked worktree, a bare repo or the git dir itself: git lists the main worktree first.
    main = _worktree_records(cwd)[0]
    if "bare" in main:
        raise NotARepoError(f"{common_dir} is a bare repository: mux needs a main checkout to work from")
    main_path = Path(main["worktree"]).resolve()
    if main_path == common_dir:
        # `--separate-git-dir`: the git dir does not record where its main checkout is.
        raise NotARepoError(f"cannot find the main checkout of {common_dir} from {cwd}: run mux from there")
    return RepoPaths(main=main_path, common_dir=common_dir)


def current_branch(worktree: Path) -> str | None:
    proc = _git(worktree, "symbolic-ref", "-q", "HEAD", ok=(0, 1))
    return _short(proc.stdout.strip()) if proc.returncode == 0 else None


def resolve_commit(repo: RepoPaths, ref: str) -> str:
    proc = _git(repo.main, "rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}", ok=(0, 1))
    if proc.returncode != 0:
        raise GitError(f"base ref '{ref}' does not exist")
    return proc.stdout.strip()


def _branch_tip(cwd: Path, branch: str) -> str | None:
    proc = _git(cwd, "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}", ok=(0, 1))
    return proc.stdout.strip() if proc.returncode == 0 else None


def branch_exists(repo: RepoPaths, branch: str) -> bool:
    return _branch_tip(repo.main, branch) is not None


# --- worktrees -------------------------------------------------------------------------------------------


def list_worktrees(repo: RepoPaths) -> list[WorktreeInfo]:
    """Every worktree of the repo, the main one first."""
    return [_worktree_info(record) for record in _worktree_records(repo.main)]


def _worktree_records(cwd: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain -z` as one {attribute: value} dict per worktree."""
    out = _git(cwd, "worktree", "list", "--porcelain", "-z").stdout
    records = []
    for block in out.split("\0\0"):
        fields = [f.partition(" ") for f in block.strip("\0").split("\0") if f]
        if fields:
            records.append({key: value for key, _, value in fields})
    return records


def _worktree_info(record: Mapping[str, str]) -> WorktreeInfo:
    head = record.get("HEAD", "")
    branch = record.get("branch")
    return WorktreeInfo(
        path=Path(record["worktree"]),
        head=head if head.strip("0") else None,  # all zeros: a branch with no commit yet
        branch=_short(branch) if branch else None,
        locked="locked" in record,
        prunable="prunable" in record,
    )


def add_worktree(repo: RepoPaths, path: Path, branch: str, base: str) -> None:
    """Create `branch` at `base` and check it out in a new worktree at `path`."""
    if os.path.lexists(path):
        raise GitError(f"path already exists: {path}")
    if branch_exists(repo, branch):
        raise GitError(f"branch '{branch}' already exists")
    commit = resolve_commit(repo, base)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.parent.resolve() / path.name
    _git(repo.main, "worktree", "add", "-b", branch, "--", str(target), commit)


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
        _git(repo.main, "worktree", "remove", "--force", "--", str(entry.path))
    else:
        # Deleted by hand: only git's bookkeeping is left, and `remove` refuses a missing directory.
        _git(repo.main, "worktree", "prune")


def delete_branch(repo: RepoPaths, branch: str) -> None:
    """`git branch -D`; git itself refuses a branch checked out (or being rebased) in any worktree."""
    _git(repo.main, "branch", "-D", "--", branch)


# --- status and change counts ----------------------------------------------------------------------------


def _status(worktree: Path, *, ignored: bool = False) -> _Status:
    args = ["status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all"]
    if ignored:
        args.append("--ignored=matching")
    records = iter(_git(worktree, *args).stdout.split("\0"))
    head: str | None = None
    branch: str | None = None
    tracked: list[str] = []
    untracked: list[str] = []
    ignored_paths: list[str] = []
    for record in records:
        kind, _, rest = record.partition(" ")
        if kind == "#":
            key, _, value = rest.partition(" ")
            if key == "branch.oid" and value != "(initial)":
                head = value
            elif key == "branch.head" and value != "(detached)":
                branch = value
        elif kind == "1":
            tracked.append(rest.split(" ", 7)[7])
        elif kind == "2":
            tracked.append(rest.split(" ", 8)[8])
            next(records)  # a rename's original path, one more NUL-terminated field
        elif kind == "u":
            tracked.append(rest.split(" ", 9)[9])
        elif kind == "?":
            untracked.append(rest)
        elif kind == "!":
            ignored_paths.append(rest)
    return _Status(head, branch, tracked, untracked, ignored_paths)


def _is_cache(path: str) -> bool:
    """True for an ignored path a build recreates (see _CACHE_DIRS); `path` ends in / for a directory."""
    parts = path.rstrip("/").split("/")
    dirs = parts if path.endswith("/") else parts[:-1]
    if parts[-1].endswith((".pyc", ".pyo")):
        return True
    return any(d in _CACHE_DIRS or d.endswith(".egg-info") for d in dirs)


def _precious_ignored(worktree: Path, status: _Status) -> list[str]:
    """Ignored files that are work (`.env`, a local database), each named: directories are listed out."""
    keep = [p for p in status.ignored if not _is_cache(p)]
    files = [p for p in keep if not p.endswith("/")]
    dirs = [p for p in keep if p.endswith("/")]
    if dirs:
        # Status names an ignored directory once; its files are what would be lost, minus nested caches.
        args = ["--literal-pathspecs", "ls-files", "-z", "--others", "--ignored", "--exclude-standard"]
        out = _git(worktree, *args, "--", *dirs).stdout
        files += [p for p in out.split("\0") if p and not _is_cache(p)]
    return sorted(files)


def _count_lines(path: Path) -> int:
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


def _numstat(worktree: Path, base: str) -> tuple[int, int]:
    """Lines added/removed in the worktree (staged or not) against merge-base(base, HEAD)."""
    out = _git(
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
    fields = iter(out.split("\0"))
    for field in fields:
        if not field:
            continue
        plus, minus, path = field.split("\t", 2)
        if not path:  # a rename: the old and new paths follow as two more fields
            next(fields)
            next(fields)
        if plus != "-":  # "-" marks a binary file, which has no lines
            added += int(plus)
            removed += int(minus)
    return added, removed


def changes(worktree: Path, base: str, branch: str) -> Changes:
    """The task's work against `base`, uncommitted edits and untracked files included.

    Lines and dirty files describe what is on disk in the worktree; ahead/behind compare `branch` (what
    `mux merge` would bring home) with `base`, so they hold still while the agent is mid-rebase.
    """
    status = _status(worktree)
    added, removed = _numstat(worktree, base)
    added += sum(_count_lines(worktree / rel) for rel in status.untracked)
    counts = _git(
        worktree, "rev-list", "--left-right", "--count", "--end-of-options", f"{base}...refs/heads/{branch}"
    ).stdout
    behind, ahead = (int(n) for n in counts.split())
    return Changes(
        dirty_files=len(status.tracked) + len(status.untracked),
        added_lines=added,
        removed_lines=removed,
        ahead=ahead,
        behind=behind,
    )


def changes_many(items: Sequence[tuple[Path, str, str]]) -> list[Changes | None]:
    """changes() for many (worktree, base, branch) at once, in order; None where git failed."""

    def one(item: tuple[Path, str, str]) -> Changes | None:
        try:
            return changes(*item)
        except MuxError:
            return None

    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_WORKERS, len(items))) as pool:
        return list(pool.map(one, items))


# --- what would be lost ----------------------------------------------------------------------------------


def _phrase(count: int, noun: str, paths: Sequence[str] = ()) -> str:
    text = f"{count} {noun}{'' if count == 1 else 's'}"
    if paths:
        shown = ", ".join(paths[:_NAMES_SHOWN]) + (", ..." if len(paths) > _NAMES_SHOWN else "")
        text += f" ({shown})"
    return text


def _unmerged_commits(repo: RepoPaths, tip: str, base: str) -> int:
    """Commits up to `tip` whose changes `base` lacks: 0 when merged, squash-merged or cherry-picked."""
    base_commit = resolve_commit(repo, base)
    # Merging the branch would change nothing: covers fast-forwards, real merges and squash merges.
    merged = _git(repo.main, "merge-tree", "--write-tree", base_commit, tip, ok=(0, 1, 128))
    if merged.returncode == 0:
        base_tree = _git(repo.main, "rev-parse", f"{base_commit}^{{tree}}").stdout.strip()
        if merged.stdout.split("\n", 1)[0] == base_tree:
            return 0
    # Base moved on over the same lines (the merge conflicts): fall back to per-commit patch identity, as
    # `git cherry` does, but keep merge commits counted, since their resolutions exist nowhere else.
    out = _git(repo.main, "rev-list", "--count", "--right-only", "--cherry-pick", f"{base_commit}...{tip}")
    return int(out.stdout)


def is_merged(repo: RepoPaths, branch: str, base: str) -> bool:
    tip = _branch_tip(repo.main, branch)
    if tip is None:
        raise GitError(f"branch '{branch}' does not exist")
    return _unmerged_commits(repo, tip, base) == 0


def unsaved_work(repo: RepoPaths, worktree: Path | None, branch: str, base: str) -> list[str]:
    """Phrases naming what removing the task would lose; [] when nothing would be lost.

    A worktree that no longer exists on disk holds nothing more to lose, so it is treated like None.
    """
    found: list[str] = []
    if worktree is not None and worktree.is_dir():
        status = _status(worktree, ignored=True)
        if status.tracked:
            found.append(_phrase(len(status.tracked), "uncommitted change", status.tracked))
        if status.untracked:
            found.append(_phrase(len(status.untracked), "untracked file", status.untracked))
        precious = _precious_ignored(worktree, status)
        if precious:
            found.append(_phrase(len(precious), "ignored file", precious))
        if status.branch is None and status.head is not None:
            lost = _git(
                worktree, "rev-list", "--count", status.head, "--not", "--branches", "--tags", "--remotes"
            ).stdout
            if int(lost):
                found.append(_phrase(int(lost), "commit") + " on a detached HEAD, not on any branch")
    tip = _branch_tip(repo.main, branch)
    if tip is not None:
        ahead = _unmerged_commits(repo, tip, base)
        if ahead:
            found.append(_phrase(ahead, "commit") + f" not in {base}")
    return found


# --- recovery refs ---------------------------------------------------------------------------------------


@contextmanager
def _scratch_index(worktree: Path) -> Iterator[dict[str, str]]:
    """Env pointing git at a throwaway copy of the worktree's index, so the real one is never written."""
    real = Path(_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="mux-index-") as tmp:
        scratch = Path(tmp) / "index"
        # Starting from the real index keeps its stat data, so `git add` re-reads only changed files.
        if real.exists():
            shutil.copyfile(real, scratch)
        yield {"GIT_INDEX_FILE": str(scratch)}


def _snapshot_tree(worktree: Path, precious: list[str]) -> str:
    """A tree of the worktree as it is on disk, plus the precious ignored files."""
    with _scratch_index(worktree) as env:
        _git(worktree, "add", "-A", env=env)
        if precious:
            _git(
                worktree,
                "--literal-pathspecs",
                "add",
                "-f",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                env=env,
                stdin="\0".join(precious),
            )
        return _git(worktree, "write-tree", env=env).stdout.strip()


def _recovery_commit(name: str, stamp: str, worktree: Path, tip: str | None) -> str | None:
    """Commit the worktree's state on top of the branch tip; None when the tip already holds all of it."""
    status = _status(worktree, ignored=True)
    precious = _precious_ignored(worktree, status)
    if not (status.tracked or status.untracked or precious) and status.head == tip:
        return None
    tree = _snapshot_tree(worktree, precious)
    # The worktree's own HEAD becomes a second parent when it left the branch (detached, mid-rebase),
    # so its commits stay reachable too.
    parents = [c for c in dict.fromkeys((tip, status.head)) if c]
    args = ["commit-tree", "--no-gpg-sign", "-m", f"mux recovery: {name} at {stamp}"]
    for parent in parents:
        args += ["-p", parent]
    return _git(worktree, *args, tree, env=_MUX_IDENTITY).stdout.strip()


def write_recovery_ref(repo: RepoPaths, name: str, branch: str, worktree: Path | None) -> str:
    """Save the branch tip plus the worktree's uncommitted, untracked and precious ignored files.

    Returns the new ref, refs/mux/recovery/<name>/<utc timestamp>[-N]. Nothing in the worktree, its index
    or the stash is touched. A worktree missing on disk counts as None.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tip = _branch_tip(repo.main, branch)
    commit = None
    if worktree is not None and worktree.is_dir():
        commit = _recovery_commit(name, stamp, worktree, tip)
    commit = commit or tip
    if commit is None:
        raise GitError(f"nothing to save for {name}: no branch '{branch}' and no worktree")
    return _create_ref(repo, f"{RECOVERY_PREFIX}{name}/{stamp}", commit)


def _create_ref(repo: RepoPaths, ref: str, commit: str) -> str:
    """Create `ref` (or `ref-1`, `ref-2`, ... when taken) without ever moving an existing one."""
    for n in range(100):
        candidate = f"{ref}-{n}" if n else ref
        # An empty old value makes update-ref fail rather than overwrite a ref another mux just wrote.
        proc = _git(repo.main, "update-ref", "-m", "mux recovery", candidate, commit, "", ok=(0, 1, 128))
        if proc.returncode == 0:
            return candidate
        if _git(repo.main, "show-ref", "--verify", "-q", candidate, ok=(0, 1)).returncode != 0:
            raise GitError(f"git update-ref {candidate} failed: {_first_line(proc.stderr)}")
    raise GitError(f"too many recovery refs named {ref}")


def list_recovery_refs(repo: RepoPaths, name: str | None = None) -> list[tuple[str, str]]:
    """(refname, sha) of recovery refs, for one task or all, oldest first."""
    pattern = f"{RECOVERY_PREFIX}{name}/" if name else RECOVERY_PREFIX
    out = _git(repo.main, "for-each-ref", "--format=%(refname)%00%(objectname)", pattern).stdout
    refs = [line.partition("\0")[::2] for line in out.splitlines() if line]
    return sorted(refs, key=lambda r: _stamp_key(r[0]))


def _stamp_key(ref: str) -> tuple[str, int, str]:
    stamp, _, suffix = ref.rsplit("/", 1)[-1].partition("-")
    return stamp, int(suffix) if suffix.isdigit() else 0, ref


# --- diff ------------------------------------------------------------------------------------------------


def diff(worktree: Path, base: str, stat: bool = False, color: bool = False) -> str:
    """The task's changes against merge-base(base, HEAD): committed, uncommitted, and untracked files as new.

    Untracked files are marked intent-to-add in a scratch copy of the index, never in the real one.
    """
    with _scratch_index(worktree) as env:
        _git(worktree, "add", "--intent-to-add", "--", ".", env=env)
        args = ["diff", "--stat" if stat else "--patch", f"--color={'always' if color else 'never'}"]
        return _git(worktree, *args, "--merge-base", "--end-of-options", base, env=env).stdout
