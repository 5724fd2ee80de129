"""The one chokepoint for git: discovery, worktrees, branches, change counts, safety checks, recovery refs.

Every call is a plain `git` argv run through `_git`; none goes through a shell. Each runs with
`--no-optional-locks`, so mux reading a task never takes the index lock the agent working there needs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import TypeGuard

from muxagent.errors import BranchExistsError, CheckoutPendingError, GitError, MergeConflictError, NotARepoError

RECOVERY_PREFIX = "refs/mux/recovery/"
# refs/mux/submodules/<task>/<stamp of its recovery ref>/<submodule path>
SUBMODULE_PREFIX = "refs/mux/submodules/"

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

# For a call whose failure mux reads itself.
_ANY_EXIT = tuple(range(256))

# git's own binary test: a NUL byte in the first 8000 bytes.
_BINARY_PROBE = 8000
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
        raise GitError(f"{shlex.join(argv[:1] + argv[2:])} failed: {error_line(proc.stderr)}")
    return proc


def quote_path(path: str) -> str:
    """A path for a message or prompt: each byte that is not UTF-8 (held as a surrogate) as git writes it, `\\351`."""
    return re.sub("[\udc80-\udcff]", lambda found: f"\\{ord(found.group()) - 0xDC00:03o}", path)


_SAYS_WHY = ("fatal:", "error:")
_SAYS_MORE = ("hint:", "warning:", *_SAYS_WHY)


def error_line(stderr: str) -> str:
    """What went wrong, in one line, from git's stderr: its first `fatal:` or `error:` line (not a progress
    line such as "Preparing worktree" before it, which is all a full disk used to show), else its first line;
    with the lines that finish it (a sentence git wrapped, the paths it lists after a colon)."""
    lines = [line.rstrip() for line in stderr.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith(_SAYS_WHY)), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return "no error message"
    text = lines[start].strip()
    listed: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(_SAYS_MORE):
            break
        if listed or text.endswith(":"):
            # The paths after the colon, all indented alike; "Please commit your changes ..." ends them.
            if listed and line[:1].isspace() != listed[0][:1].isspace():
                break
            listed.append(line)
        elif not text.endswith((".", "!", "?")) and not line[:1].isspace():
            text += " " + line.strip()  # a sentence git wrapped
        else:
            break
    if listed:
        names = [name.strip() for name in listed]
        text += " " + ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
    return text


def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


# --- repository and refs ---------------------------------------------------------------------------------


def git_version() -> tuple[int, ...]:
    """The installed git's version as numbers, e.g. (2, 39, 5)."""
    words = _git(Path("/"), "version").stdout.split()  # anywhere: the cwd may have been deleted
    numbers = words[2].split(".") if len(words) > 2 else []
    return tuple(int(n) for n in numbers if n.isdigit())


_WHERE = ("rev-parse", "--path-format=absolute", "--git-common-dir", "--git-dir", "--show-toplevel")


def discover(cwd: Path) -> RepoPaths:
    """Find the repo from the main checkout, any subdirectory, a linked worktree or the git dir itself."""
    try:
        # C locale: the "not a git repository" test below reads git's message.
        proc = _git(cwd, *_WHERE, env={"LC_ALL": "C"}, ok=(0, 128))
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
    main = _worktree_records(cwd)[0]
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
        lines = _git(Path(named), *_WHERE).stdout.splitlines()
    except GitError:
        return None
    if len(lines) == 3 and Path(lines[0]).resolve() == Path(lines[1]).resolve() == common_dir:
        return Path(lines[2]).resolve()
    return None


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
    found = [_worktree_info(record) for record in _worktree_records(repo.main)]
    if found and Path(os.path.realpath(found[0].path)) == repo.common_dir:
        # `--separate-git-dir`: git names the git dir as the main worktree, and `mux merge` would take the main
        # checkout's branch for one checked out somewhere else, and refuse every merge.
        found[0] = replace(found[0], path=repo.main)
    return found


def included_untracked(main: Path, patterns_file: Path) -> list[str]:
    """Untracked paths of the main checkout that match the gitignore-style patterns in `patterns_file` AND are
    gitignored (Claude Code's `.worktreeinclude` rule: it only brings over files a checkout cannot have).
    Folders that match as a whole come as one path ending in `/`."""
    listed = _git(main, "ls-files", "-z", "--others", "--ignored", "--directory", f"--exclude-from={patterns_file}")
    paths = [path for path in listed.stdout.split("\0") if path]
    if not paths:
        return []
    # check-ignore exits 1 when none of them is ignored.
    ignored = _git(main, "check-ignore", "-z", "--stdin", stdin="\0".join(paths) + "\0", ok=(0, 1))
    return sorted({path for path in ignored.stdout.split("\0") if path})


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
    args = [*_NO_HOOKS, "-c", "checkout.workers=0", "worktree", "add", mode, "-b", branch, "--", str(target), start]
    try:
        _git(repo.main, *args)
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
    head = _git(worktree, "rev-parse", "HEAD").stdout.strip()
    hook = _git(worktree, "hook", "run", "--ignore-missing", "post-checkout", "--", "0" * 40, head, "1", ok=_ANY_EXIT)
    if hook.returncode:
        said = [line.strip() for line in (hook.stderr or hook.stdout).splitlines() if line.strip()]
        raise GitError(f"the post-checkout hook failed (exit {hook.returncode}): {said[-1] if said else 'no message'}")


def _discard_failed_add(repo: RepoPaths, target: Path, branch: str) -> None:
    """Take back what a failed `git worktree add` made (its caller checked that neither existed before)."""
    if any(Path(os.path.realpath(w.path)) == target for w in list_worktrees(repo)):
        _git(repo.main, "worktree", "remove", "--force", "--", str(target), ok=_ANY_EXIT)
    if os.path.lexists(target):
        shutil.rmtree(target, ignore_errors=True)
    _git(repo.main, "worktree", "prune")
    if branch_exists(repo, branch):
        delete_branch(repo, branch)


def tracked_at_head(worktree: Path, paths: Sequence[str]) -> set[str]:
    """Which of `paths` (relative to the worktree's root) HEAD has, as a file or a folder."""
    out = _git(worktree, "--literal-pathspecs", "ls-tree", "-z", "--name-only", "HEAD", "--", *paths).stdout
    return {path for path in out.split("\0") if path}


def checkout_pending(worktree: Path) -> bool:
    """Whether the worktree still waits for the checkout its window does: its files and index are not there yet,
    so git would read it as every file deleted."""
    # Asked for every task on every `mux ls` and monitor tick: plain os calls, a third of git_dir's cost.
    try:
        # surrogateescape: a repo path that is not UTF-8 must name the same folder, not one with U+FFFD in it.
        with open(os.path.join(worktree, ".git"), encoding="utf-8", errors="surrogateescape") as dot_git:
            link = dot_git.read().removeprefix("gitdir:").strip()
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
        _git(repo.main, "worktree", "remove", "--force", "--", str(entry.path))
    else:
        # Deleted by hand: only git's bookkeeping is left, and `remove` refuses a missing directory.
        _git(repo.main, "worktree", "prune")


def delete_branch(repo: RepoPaths, branch: str) -> None:
    """`git branch -D`; git itself refuses a branch checked out (or being rebased) in any worktree."""
    _git(repo.main, "branch", "-D", "--", branch)


# --- status and change counts ----------------------------------------------------------------------------


def _present(worktree: Path | None) -> TypeGuard[Path]:
    return worktree is not None and worktree.is_dir()


def require_checkout(worktree: Path) -> None:
    """CheckoutPendingError while the worktree's files are not checked out yet."""
    if checkout_pending(worktree):
        raise _not_checked_out(worktree)


def _not_checked_out(worktree: Path) -> CheckoutPendingError:
    return CheckoutPendingError(
        f"{worktree} has no files yet: its task's window checks them out before the agent starts (see `mux ls`)"
    )


@contextmanager
def _work_index(worktree: Path) -> Iterator[dict[str, str] | None]:
    """The index to read a worktree's work against: its own (None), or while its checkout is pending (no index
    yet) a scratch one of HEAD, so that what someone put there shows as a change and the files the checkout has
    not written yet do not show as deletions."""
    if not checkout_pending(worktree):
        yield None
        return
    with _scratch_index(worktree) as env:
        yield env


def _status(worktree: Path, *, ignored: bool = False, env: Mapping[str, str] | None = None) -> _Status:
    """`git status` of the worktree; a worktree whose checkout is pending needs `env` from `_work_index`."""
    pending = checkout_pending(worktree)
    if pending and env is None:
        raise _not_checked_out(worktree)
    args = ["status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all"]
    if ignored:
        args.append("--ignored=matching")
    records = iter(_git(worktree, *args, env=env).stdout.split("\0"))
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
            if pending and rest.startswith(".D "):
                continue  # not checked out yet
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
    out = _git(worktree, *args, env=env, stdin="\0".join(sorted(above)) + "\0", ok=(0, 1)).stdout
    return {path for path in out.split("\0") if path}


def _precious_ignored(worktree: Path, status: _Status, env: Mapping[str, str] | None = None) -> list[str]:
    """Ignored files that are work (`.env`, a local database), each named: directories are listed out."""
    confirmed = _ignored_cache_folders(worktree, status.ignored, env)
    keep = [p for p in status.ignored if not _is_cache(p, p if p.endswith("/") else None, confirmed)]
    files = [p for p in keep if not p.endswith("/")]
    dirs = [p for p in keep if p.endswith("/")]
    if dirs:
        # Status names an ignored directory once; its files are what would be lost, minus nested caches.
        args = ["--literal-pathspecs", "ls-files", "-z", "--others", "--ignored", "--exclude-standard"]
        out = _git(worktree, *args, "--", *dirs, env=env).stdout
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
    status = _status(worktree)
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
    counts = _git(cwd, "rev-list", "--left-right", "--count", "--end-of-options", f"{base}...{tip}").stdout
    behind, ahead = (int(n) for n in counts.split())
    return ahead, behind


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


def unsaved_work(repo: RepoPaths, worktree: Path | None, branch: str, base: str) -> list[str]:
    """Phrases naming what removing the task would lose; [] when nothing would be lost.

    A worktree that no longer exists on disk holds nothing more to lose, so it is treated like None.
    """
    found: list[str] = []
    if _present(worktree):
        with _work_index(worktree) as env:
            status = _status(worktree, ignored=True, env=env)
            precious = _precious_ignored(worktree, status, env)
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
            lost = _git(
                worktree, "rev-list", "--count", status.head, "--not", "--branches", "--tags", "--remotes"
            ).stdout
            if int(lost):
                found.append(_phrase(int(lost), "commit") + " on a detached HEAD, not on any branch")
    tip = _branch_tip(repo.main, branch)
    if tip is None:
        return found
    if _git(repo.main, "rev-parse", "--verify", "-q", "--end-of-options", f"{base}^{{commit}}", ok=(0, 1)).returncode:
        # The base is gone (a stacked task's parent merged and removed, a renamed branch): what no other ref holds
        # is what would be lost. Asking for the base itself made `rm --force` and every `clean` fail.
        # (--exclude before --branches takes the name without refs/heads/.)
        only_here = _git(
            repo.main, "rev-list", "--count", tip, "--not", f"--exclude={branch}", "--branches", "--tags", "--remotes"
        ).stdout
        if int(only_here):
            found.append(_phrase(int(only_here), "commit") + f" on no other branch (its base {base} is gone)")
        return found
    ahead = _unmerged_commits(repo, tip, base)
    if ahead:
        found.append(_phrase(ahead, "commit") + f" not in {base}")
    return found


# --- recovery refs ---------------------------------------------------------------------------------------


@contextmanager
def _scratch_index(worktree: Path) -> Iterator[dict[str, str]]:
    """Env pointing git at a throwaway copy of the worktree's index (of HEAD while its checkout is pending), so
    the real one is never written."""
    real = Path(_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="mux-index-") as tmp:
        scratch = Path(tmp) / "index"
        env = {"GIT_INDEX_FILE": str(scratch)}
        # Starting from the real index keeps its stat data, so `git add` re-reads only changed files. copy2 keeps
        # the index's mtime too: git re-reads files modified in the same second as the index was written ("racy
        # git"), and a fresh mtime would hide a same-size edit made in that second from the snapshot.
        if real.exists():
            shutil.copy2(real, scratch)
        elif checkout_pending(worktree):
            _git(worktree, "read-tree", "HEAD", env=env)
        yield env


def _snapshot_tree(worktree: Path, precious: list[str], exact: Sequence[str] = ()) -> str:
    """A tree of the worktree as it is on disk, plus the precious ignored files (while its checkout is pending:
    HEAD's tree with the files someone put there, the files not checked out yet kept as they are in HEAD).
    The files in `exact` hold their bytes on disk, not what git's filters make of them (see _store_exact).
    Repositories of their own among them (paths ending in /) are left out: see _save_repository."""
    pending = checkout_pending(worktree)
    # `add` would store a nested repository as a gitlink, a bare commit id (and fail on one with no commit);
    # the ignored ones `add -A` leaves out anyway (and naming them in a pathspec makes it fail).
    apart = [f":(exclude,literal){path.rstrip('/')}" for path in exact if path.endswith("/") and path not in precious]
    precious = [path for path in precious if not path.endswith("/")]
    with _scratch_index(worktree) as env:
        # --sparse: in a sparse checkout, `add` skips the paths outside the sparse cone even when the agent wrote
        # them (` M dir2/y`), and a merge or a recovery ref would drop that edit.
        _git(worktree, "add", "--sparse", "--ignore-removal" if pending else "-A", "--", ".", *apart, env=env)
        if precious:
            _git(
                worktree,
                "--literal-pathspecs",
                "add",
                "--sparse",
                "-f",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                env=env,
                stdin="\0".join(precious),
            )
        _store_exact(worktree, exact, env)
        return _git(worktree, "write-tree", env=env).stdout.strip()


_HASHED_AT_ONCE = 2000  # paths per `git hash-object` argv: well under the 2 MB of ARG_MAX


def _store_exact(worktree: Path, paths: Sequence[str], env: Mapping[str, str]) -> None:
    """Store the regular files among `paths` in the index at `env` with their bytes on disk, no filter applied.

    `git add` stores what the clean filter, `ident` and the eol attributes make of a file: with `* text=auto` an
    uncommitted CRLF file came back from `rm --force` + `restore` as LF. `apply_snapshot` writes them back as
    stored."""
    files = [path for path in paths if _is_regular_file(worktree / path)]
    entries = []
    for start in range(0, len(files), _HASHED_AT_ONCE):
        chunk = files[start : start + _HASHED_AT_ONCE]
        ids = _git(worktree, "hash-object", "-w", "--no-filters", "--", *chunk).stdout.split()
        for path, blob in zip(chunk, ids, strict=True):
            mode = "100755" if os.lstat(worktree / path).st_mode & 0o111 else "100644"
            entries.append(f"{mode} {blob}\t{path}\0")
    if entries:
        _git(worktree, "update-index", "-z", "--index-info", env=env, stdin="".join(entries))


def _is_regular_file(path: Path) -> bool:
    try:
        return S_ISREG(os.lstat(path).st_mode)
    except OSError:  # deleted: `add -A` recorded that already
        return False


def _recovery_commit(name: str, stamp: str, worktree: Path, tip: str | None) -> str | None:
    """Commit the worktree's state on top of the branch tip; None when the tip already holds all of it."""
    with _work_index(worktree) as env:
        status = _status(worktree, ignored=True, env=env)
        precious = _precious_ignored(worktree, status, env)
    hidden = hidden_edits(worktree)  # `add -A` leaves them out as git status does
    if not (status.tracked or status.untracked or precious or hidden) and status.head == tip:
        return None
    tree = _snapshot_tree(worktree, precious, [*status.tracked, *status.untracked, *precious, *hidden])
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
    if _present(worktree):
        commit = _recovery_commit(name, stamp, worktree, tip)
    commit = commit or tip
    if commit is None:
        raise GitError(f"nothing to save for {name}: no branch '{branch}' and no worktree")
    ref = _create_ref(repo, f"{RECOVERY_PREFIX}{name}/{stamp}", commit)
    if _present(worktree):
        _save_submodules(repo, name, ref.rsplit("/", 1)[-1], worktree)
    return ref


def _save_submodules(repo: RepoPaths, name: str, stamp: str, worktree: Path) -> list[str]:
    """Push the local state of the worktree's initialised submodules into the repo, under SUBMODULE_PREFIX.

    A linked worktree keeps its submodules' git dirs inside its own git dir, so removing the worktree would drop
    their commits and files with it. A clean submodule whose HEAD a remote-tracking branch holds is skipped: it
    can be fetched again.
    """
    declared = _declared_submodules(worktree)
    saved = [_save_repository(repo, name, stamp, worktree, path) for path in _repositories_apart(worktree, declared)]
    for entry in _git(worktree, "ls-files", "-s", "-z").stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        sub = worktree / path
        if not meta.startswith("160000 ") or not (sub / ".git").exists() or path not in declared:
            continue
        head = _git(sub, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
        if not head:
            continue
        status = _status(sub, ignored=True)
        precious = _precious_ignored(sub, status)
        commit = head
        if status.tracked or status.untracked or precious:
            tree = _snapshot_tree(sub, precious, [*status.tracked, *status.untracked, *precious])
            message = f"{_RECOVERY_SUBJECT}{name} submodule {path} at {stamp}"
            made = _git(sub, "commit-tree", "--no-gpg-sign", "-p", head, "-m", message, tree, env=_MUX_IDENTITY)
            commit = made.stdout.strip()
        elif _git(sub, "branch", "-r", "--contains", head).stdout.strip():
            continue
        ref = f"{SUBMODULE_PREFIX}{name}/{stamp}/{path}"
        _git(sub, *_NO_HOOKS, "push", "--quiet", "--no-verify", str(repo.common_dir), f"{commit}:{ref}")
        saved.append(ref)
    return saved


def _declared_submodules(worktree: Path) -> set[str]:
    """The submodule paths the worktree's .gitmodules declares."""
    if not (worktree / ".gitmodules").is_file():
        return set()
    return _submodule_paths(worktree, "-f", ".gitmodules")


def _submodule_paths(cwd: Path, *source: str) -> set[str]:
    """The `submodule.*.path` values of a .gitmodules (`source`: `-f FILE` or `--blob BLOB`)."""
    out = _git(cwd, "config", *source, "-z", "--get-regexp", r"^submodule\..*\.path$", ok=(0, 1)).stdout
    return {record.partition("\n")[2] for record in out.split("\0") if record}


def nested_repositories(worktree: Path) -> list[str]:
    """Untracked folders of the worktree that are git repositories of their own (what an agent's `git clone` or
    `git init` leaves), without the trailing /: `git add` would commit each as a bare gitlink."""
    with _work_index(worktree) as env:
        status = _status(worktree, env=env)
    return [path.rstrip("/") for path in status.untracked if path.endswith("/")]


def _repositories_apart(worktree: Path, declared: set[str]) -> list[str]:
    """Every repository of its own in the worktree that is no declared submodule: untracked, inside an ignored
    folder, or added by hand as a gitlink with no .gitmodules entry."""
    with _work_index(worktree) as env:
        status = _status(worktree, ignored=True, env=env)
        ignored = _precious_ignored(worktree, status, env)
    found = [path.rstrip("/") for path in [*status.untracked, *ignored] if path.endswith("/")]
    for entry in _git(worktree, "ls-files", "-s", "-z").stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith("160000 ") and path not in declared and (worktree / path / ".git").exists():
            found.append(path)
    return found


def _save_repository(repo: RepoPaths, name: str, stamp: str, worktree: Path, path: str) -> str:
    """Push a repository of its own inside the worktree into the repo, under SUBMODULE_PREFIX: one commit of its
    files as they are on disk, whose parents are its HEAD and branches and whose message names them, so that
    restore_submodule can rebuild it (an agent's clone came back from `mux restore` as an empty folder)."""
    sub = worktree / path
    head = _git(sub, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    on_branch = _git(sub, "symbolic-ref", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    branches = _git(sub, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/").stdout.splitlines()
    status = _status(sub, ignored=True)
    precious = _precious_ignored(sub, status)
    tree = _snapshot_tree(sub, precious, [*status.tracked, *status.untracked, *precious])
    lines = [f"HEAD {on_branch or head}", *branches]
    message = f"{_RECOVERY_SUBJECT}{name} repository {path} at {stamp}\n\n" + "\n".join(lines) + "\n"
    args = ["commit-tree", "--no-gpg-sign", "-m", message]
    for parent in dict.fromkeys(c for c in [head, *(line.split(" ")[-1] for line in branches)] if c):
        args += ["-p", parent]
    commit = _git(sub, *args, tree, env=_MUX_IDENTITY).stdout.strip()
    ref = f"{SUBMODULE_PREFIX}{name}/{stamp}/{path}"
    _git(sub, *_NO_HOOKS, "push", "--quiet", "--no-verify", str(repo.common_dir), f"{commit}:{ref}")
    return ref


@dataclass(frozen=True)
class SubmoduleRef:
    """refs/mux/submodules/<task>/<stamp>/<path>: a submodule's state, saved with the task's recovery ref <stamp>."""

    ref: str
    commit: str
    stamp: str
    path: str


def list_submodule_refs(repo: RepoPaths, name: str | None = None) -> list[SubmoduleRef]:
    """Saved submodule states, for one task or all."""
    pattern = f"{SUBMODULE_PREFIX}{name}/" if name else SUBMODULE_PREFIX
    out = _git(repo.main, "for-each-ref", "--format=%(refname)%00%(objectname)", pattern).stdout
    found = []
    for ref, _, commit in (line.partition("\0") for line in out.splitlines() if line):
        parts = ref[len(SUBMODULE_PREFIX) :].split("/", 2)
        if len(parts) == 3:  # not a name mux wrote otherwise: not mux's to use
            found.append(SubmoduleRef(ref, commit, parts[1], parts[2]))
    return found


def _create_ref(repo: RepoPaths, ref: str, commit: str) -> str:
    """Create `ref` (or `ref-1`, `ref-2`, ... when taken) without ever moving an existing one."""
    for n in range(100):
        candidate = f"{ref}-{n}" if n else ref
        # An empty old value makes update-ref fail rather than overwrite a ref another mux just wrote.
        proc = _git(repo.main, "update-ref", "-m", "mux recovery", candidate, commit, "", ok=(0, 1, 128))
        if proc.returncode == 0:
            return candidate
        if _git(repo.main, "show-ref", "--verify", "-q", candidate, ok=(0, 1)).returncode != 0:
            raise GitError(f"git update-ref {candidate} failed: {error_line(proc.stderr)}")
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
    require_checkout(worktree)
    # A repository of its own is no file of the task's (and `add` fails on one with no commit yet).
    apart = [f":(exclude,literal){path}" for path in nested_repositories(worktree)]
    with _scratch_index(worktree) as env:
        _git(worktree, "add", "--sparse", "--intent-to-add", "--", ".", *apart, env=env)
        args = ["diff", "--stat" if stat else "--patch", f"--color={'always' if color else 'never'}"]
        return _git(worktree, *args, "--merge-base", "--end-of-options", base, env=env).stdout


# --- merge-back, sync and restore ------------------------------------------------------------------------

# mux's own commits, merges and rebases run no repo hook: a pre-commit hook that reformats or refuses would turn
# "bring the task home" into a half-done operation in someone else's checkout.
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
# A user's rebase config must not reach outside the task: update-refs would move other branches that point into
# the replayed commits, autostash would use the stash.
_REBASE_SAFE = ("-c", "rebase.autoStash=false", "-c", "rebase.updateRefs=false", "-c", "rebase.autoSquash=false")
# Fixed dates make a snapshot of the same tree on the same parent the same commit, so the conflict radar can
# cache its results by commit ids.
_FIXED_DATES = {"GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000"}
_RECOVERY_SUBJECT = "mux recovery: "
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
    head = _git(worktree, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip() or None
    return head, current_branch(worktree)


def branch_tip(repo: RepoPaths, branch: str) -> str | None:
    return _branch_tip(repo.main, branch)


def is_ancestor(repo: RepoPaths, ancestor: str, descendant: str) -> bool:
    return _git(repo.main, "merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1)).returncode == 0


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


def dirty_paths(worktree: Path) -> set[str]:
    """Every path with local state a checkout could overwrite: staged, modified, untracked, precious ignored, and
    edits `git status` does not show (see hidden_edits)."""
    status = _status(worktree, ignored=True)
    return {*status.tracked, *status.untracked, *_precious_ignored(worktree, status), *hidden_edits(worktree)}


def hidden_edits(worktree: Path) -> list[str]:
    """Files marked assume-unchanged or skip-worktree whose bytes differ from the index: `git status` takes them
    as unchanged, but `git merge` refuses to overwrite them, and did so only after mux had committed the task."""
    flagged: dict[str, str] = {}  # path -> blob in the index
    for entry in _git(worktree, "ls-files", "-v", "-s", "-z").stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        tag, _, rest = meta.partition(" ")
        # A lower-case tag marks assume-unchanged, S skip-worktree; a sparse checkout's absent files are not edits.
        if (tag.islower() or tag == "S") and _is_regular_file(worktree / path):
            flagged[path] = rest.split(" ")[1]
    if not flagged:
        return []
    paths = list(flagged)
    now = _git(worktree, "hash-object", "--", *paths).stdout.split()
    return [path for path, blob in zip(paths, now, strict=True) if blob != flagged[path]]


def has_changes(worktree: Path) -> bool:
    """Uncommitted or untracked files (ignored ones not counted): what `git add -A` would commit."""
    status = _status(worktree)
    return bool(status.tracked or status.untracked)


def changed_paths(repo: RepoPaths, old: str, new: str) -> list[str]:
    """Paths that differ between two commits (renames as a delete plus an add)."""
    out = _git(repo.main, "diff", "--name-only", "--no-renames", "-z", old, new).stdout
    return [p for p in out.split("\0") if p]


def merge_trees(repo: RepoPaths, ours: str, theirs: str) -> tuple[str, list[str]]:
    """(merged tree, conflicting paths) of merging two commits, written to the object store only.

    `git merge-tree --write-tree` touches no worktree, index or ref (git >= 2.38).
    """
    args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs]
    proc = _git(repo.main, *args, ok=(0, 1))
    fields = proc.stdout.split("\0")
    paths = [p for p in fields[1:] if p] if proc.returncode == 1 else []
    return fields[0].strip(), paths


def undeclared_gitlinks(repo: RepoPaths, old: str, tree: str) -> list[str]:
    """Gitlinks (submodule commits) that `tree` adds or moves since commit `old` and that its .gitmodules does not
    declare: a clone gets an empty folder for each, and `git submodule update` fails on it."""
    out = _git(repo.main, "diff-tree", "-r", "-z", "--no-renames", old, tree).stdout.split("\0")
    links = [path for meta, path in zip(out[::2], out[1::2], strict=False) if meta.split(" ")[1:2] == ["160000"]]
    if not links:
        return []
    declared: set[str] = set()
    if _git(repo.main, "cat-file", "-e", f"{tree}:.gitmodules", ok=(0, 1, 128)).returncode == 0:
        declared = _submodule_paths(repo.main, "--blob", f"{tree}:.gitmodules")
    return [path for path in links if path not in declared]


def commit_tree(repo: RepoPaths, tree: str, parents: Sequence[str], message: str) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return _git(repo.main, *args, stdin=message).stdout.strip()


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit everything in the worktree (untracked files too, ignored ones not) on its branch, with no hooks.

    Returns the new commit, or None when there was nothing to commit.
    """
    status = _status(worktree)
    if not (status.tracked or status.untracked):
        return None
    _git(worktree, "add", "--sparse", "-A")  # --sparse: see _snapshot_tree
    if _git(worktree, "diff", "--cached", "--quiet", ok=(0, 1)).returncode == 0:
        return None  # only changes inside submodules, which `add` cannot take
    _git(worktree, *_NO_HOOKS, "commit", "--no-verify", "-q", "-F", "-", stdin=message)
    return _git(worktree, "rev-parse", "HEAD").stdout.strip()


@contextmanager
def commit_undone_on_error(worktree: Path | None) -> Iterator[None]:
    """If the block raises, take back the one commit it made on the worktree's branch, and restore the index
    as it was: a merge that git's final `merge --ff-only` refuses must leave the task's work uncommitted, as it
    found it. A branch someone else moved since is left alone."""
    if worktree is None:
        yield
        return
    head = _git(worktree, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    index = Path(_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
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
    now = _git(worktree, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    parent = _git(worktree, "rev-parse", "--verify", "-q", "HEAD^", ok=(0, 1)).stdout.strip()
    if not head or now == head or parent != head:
        return
    _git(worktree, "reset", "-q", "--soft", head)
    if saved.exists():
        # Through git's own lock file, so an agent's git running meanwhile never sees a half-written index.
        lock = index.with_name(index.name + ".lock")
        with open(lock, "xb") as out:
            out.write(saved.read_bytes())
        os.replace(lock, index)


def dirty_submodules(worktree: Path) -> list[str]:
    """Submodules with uncommitted or untracked files inside: work no superproject commit or snapshot can hold."""
    records = iter(_git(worktree, "status", "--porcelain=v2", "-z", "--untracked-files=all").stdout.split("\0"))
    found = []
    for record in records:
        kind, _, rest = record.partition(" ")
        if kind not in ("1", "2"):
            continue
        fields = rest.split(" ", 7 if kind == "1" else 8)
        if kind == "2":
            next(records, None)  # a rename's original path
        sub = fields[1]  # "N..." for a file, "S<commit><modified><untracked>" for a submodule
        if sub.startswith("S") and (sub[2] == "M" or sub[3] == "U"):
            found.append(fields[-1])
    return found


def update_branch(repo: RepoPaths, branch: str, new: str, old: str, reason: str) -> None:
    """Move a branch that no worktree has checked out, only if it still points at `old` (compare-and-swap)."""
    proc = _git(repo.main, "update-ref", "-m", reason, f"refs/heads/{branch}", new, old, ok=(0, 1, 128))
    if proc.returncode != 0:
        raise GitError(f"branch '{branch}' moved while mux was merging into it: nothing was changed, try again")


def fast_forward(worktree: Path, new: str) -> None:
    """Move the branch checked out in `worktree` forward to `new`, updating index and files.

    `git merge --ff-only` refuses rather than overwrite a local change; --no-autostash keeps the user's stash out
    of it whatever their config says.
    """
    _git(worktree, *_NO_HOOKS, "merge", "--ff-only", "--no-autostash", "--no-stat", "-q", new)


def ref_tips(repo: RepoPaths) -> dict[str, str]:
    """Full ref name -> commit for every branch and tag (annotated tags peeled), in one git call."""
    fmt = "%(refname)%00%(objectname)%00%(*objectname)"
    out = _git(repo.main, "for-each-ref", f"--format={fmt}", "refs/heads/", "refs/tags/").stdout
    tips = {}
    for line in out.splitlines():
        ref, _, rest = line.partition("\0")
        commit, _, peeled = rest.partition("\0")
        tips[ref] = peeled or commit
    return tips


def worktree_snapshot(worktree: Path, parent: str) -> str:
    """A commit of the worktree as it is on disk (untracked files included) on `parent`, via a scratch index.

    Same content, same commit: the identity and dates are fixed.
    """
    tree = _snapshot_tree(worktree, [])
    env = {**_MUX_IDENTITY, **_FIXED_DATES}
    return _git(worktree, "commit-tree", "-p", parent, "-m", "mux snapshot", tree, env=env).stdout.strip()


def rebase_commits(repo: RepoPaths, tip: str, onto: str, scratch: Path) -> str:
    """`tip`'s commits replayed linearly onto `onto`, in a throwaway detached worktree; returns the new tip.

    Neither the task's worktree nor the main checkout is touched. MergeConflictError if a commit does not apply.
    """
    if os.path.lexists(scratch):
        discard_scratch(repo, scratch)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    _git(repo.main, *_NO_HOOKS, "worktree", "add", "--detach", "-f", "--", str(scratch), tip)
    try:
        args = [*_NO_HOOKS, *_REBASE_SAFE, "rebase", "--no-autostash", "--no-update-refs", "-q", onto]
        proc = _git(scratch, *args, ok=(0, 1, 128))
        if proc.returncode != 0:
            paths = unmerged_paths(scratch)
            raise MergeConflictError(f"replaying the task's commits on {onto[:12]} conflicts", paths)
        return _git(scratch, "rev-parse", "HEAD").stdout.strip()
    finally:
        discard_scratch(repo, scratch)


def discard_scratch(repo: RepoPaths, scratch: Path) -> None:
    """Remove a throwaway worktree mux made (rebase-in-progress or not)."""
    if scratch.is_dir():
        _git(repo.main, "worktree", "remove", "--force", "--force", "--", str(scratch), ok=(0, 128))
        shutil.rmtree(scratch, ignore_errors=True)
    _git(repo.main, "worktree", "prune")


def unmerged_paths(worktree: Path) -> list[str]:
    out = _git(worktree, "diff", "--name-only", "--diff-filter=U", "-z").stdout
    return sorted({p for p in out.split("\0") if p})


def sync_in_worktree(worktree: Path, onto: str, label: str, rebase: bool) -> list[str]:
    """Merge (or rebase onto) `onto` inside the task's worktree; [] when clean, else the paths left conflicting.

    On a conflict git's own state (MERGE_HEAD, rebase-merge/) stays for the agent to resolve. Any other failure
    (local changes in the way) is raised with git's words, and git has changed nothing.
    """
    if rebase:
        args = [*_NO_HOOKS, *_REBASE_SAFE, "rebase", "--no-autostash", "--no-update-refs", "-q", onto]
    else:
        args = [*_NO_HOOKS, "merge", "--no-autostash", "--no-edit", "--no-stat", "-q", "-m", f"Merge {label}", onto]
    proc = _git(worktree, *args, env={"GIT_EDITOR": "true"}, ok=(0, 1, 128))
    if proc.returncode == 0:
        return []
    if in_progress(worktree) is not None:
        return unmerged_paths(worktree) or ["(see `git status` in the worktree)"]
    raise GitError(f"git {'rebase' if rebase else 'merge'} {label} failed: {error_line(proc.stderr + proc.stdout)}")


def recovery_parts(repo: RepoPaths, commit: str) -> tuple[str, str | None]:
    """(branch tip, snapshot commit or None) of what a recovery ref points at.

    Read through GitPython's object model: `mux restore` is the one command that walks commits, and it can
    afford the import (~90 ms) that the hot paths cannot.
    """
    import git

    with git.Repo(repo.main) as found:
        # As for every git call here: variables a git hook exported must not point at another repository.
        found.git.update_environment(**dict.fromkeys(_REPO_ENV))
        saved = found.commit(commit)
        if str(saved.summary).startswith(_RECOVERY_SUBJECT) and saved.parents:
            return saved.parents[0].hexsha, commit
    return commit, None


def apply_snapshot(worktree: Path, snapshot: str, since: str = "HEAD") -> None:
    """Put a recovery snapshot's files back in the worktree as uncommitted and untracked changes, byte for byte.

    Each file the snapshot changes from HEAD is written as stored (it holds the bytes that were on disk: no
    smudge filter or eol conversion may touch them, and a sparse checkout must not skip them), each file it
    lacks is deleted (both against `since`, the tree the worktree has). The index stays as it is (at HEAD), so
    nothing is staged behind the user's back.
    """
    fields = iter(_git(worktree, "diff-tree", "-r", "-z", "--no-renames", since, snapshot).stdout.split("\0"))
    written: list[tuple[str, str, str]] = []  # (mode, blob, path)
    for meta in fields:
        if not meta:
            continue
        _, new_mode, _, blob, what = meta.lstrip(":").split(" ")
        path = next(fields)
        if what in ("D", "T"):
            _delete_file(worktree, path)
        if what != "D" and new_mode != "160000":  # submodules come back on their own (restore_submodule)
            written.append((new_mode, blob, path))
    contents = _read_blobs(worktree, [blob for _, blob, _ in written])
    for mode, blob, path in written:
        _write_file(worktree / path, mode, contents[blob])


def _delete_file(worktree: Path, path: str) -> None:
    """Delete a file and the folders it leaves empty (a file of the snapshot may take a folder's place)."""
    target = worktree / path
    if target.is_symlink() or target.is_file():
        target.unlink()
    for folder in target.parents:
        if folder == worktree or not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()


def _write_file(target: Path, mode: str, content: bytes) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()  # the checkout's version, maybe of another type
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "120000":
        target.symlink_to(os.fsdecode(content))
        return
    target.write_bytes(content)
    if mode == "100755":
        readable = target.stat().st_mode
        target.chmod(readable | (readable & 0o444) >> 2)  # executable by whoever may read it, as git does


def _read_blobs(cwd: Path, blobs: Sequence[str]) -> dict[str, bytes]:
    """The raw content of each blob (`cat-file --batch`: no filter applied), in one git call."""
    if not blobs:
        return {}
    unique = list(dict.fromkeys(blobs))
    proc = subprocess.run(
        ["git", "--no-optional-locks", "cat-file", "--batch"],
        cwd=cwd,
        env=_env(),
        input="".join(f"{blob}\n" for blob in unique).encode(),
        capture_output=True,
    )
    if proc.returncode != 0:
        raise GitError(f"git cat-file --batch failed: {error_line(proc.stderr.decode(errors='replace'))}")
    contents, offset = {}, 0
    for blob in unique:
        header_end = proc.stdout.index(b"\n", offset)
        size = int(proc.stdout[offset:header_end].split()[2])
        contents[blob] = proc.stdout[header_end + 1 : header_end + 1 + size]
        offset = header_end + 1 + size + 1  # the content is followed by a newline
    return contents


def restore_submodule(repo: RepoPaths, worktree: Path, path: str, ref: str) -> None:
    """Put a submodule saved by _save_submodules back in a restored worktree: initialised from its configured URL,
    checked out (detached, as `git submodule update` leaves it) at the saved commit, uncommitted files back.
    A repository of its own (see _save_repository) is made again, with its branches and HEAD."""
    sub = worktree / path
    if path not in _declared_submodules(worktree):
        _restore_repository(repo, sub, ref)
        return
    try:
        _git(worktree, *_NO_HOOKS, "submodule", "update", "--init", "--quiet", "--", path)
    except GitError:
        # The clone may stand with only the recorded commit missing upstream (the agent's own commit in the
        # submodule, say): the saved ref brings that commit below.
        if not (sub / ".git").exists():
            raise
    _git(sub, "fetch", "--quiet", "--no-tags", str(repo.common_dir), ref)
    tip, snapshot = recovery_parts(repo, _git(sub, "rev-parse", "FETCH_HEAD").stdout.strip())
    _git(sub, *_NO_HOOKS, "checkout", "-q", "--detach", tip)
    if snapshot is not None:
        apply_snapshot(sub, snapshot)


def _restore_repository(repo: RepoPaths, sub: Path, ref: str) -> None:
    sub.mkdir(parents=True, exist_ok=True)
    _git(sub, "init", "-q")
    _git(sub, "fetch", "--quiet", "--no-tags", str(repo.common_dir), ref)
    saved = _git(sub, "rev-parse", "FETCH_HEAD").stdout.strip()
    head = ""
    for line in _git(sub, "log", "-1", "--format=%b", saved).stdout.splitlines():
        what, _, value = line.partition(" ")
        if what == "HEAD":
            head = value
        elif what.startswith("refs/heads/"):
            _git(sub, "update-ref", what, value)
    if head.startswith("refs/"):
        _git(sub, "symbolic-ref", "HEAD", head)
    elif head:
        _git(sub, "update-ref", "--no-deref", "HEAD", head)
    since = _git(sub, "hash-object", "-w", "-t", "tree", "--stdin", stdin="").stdout.strip()  # the empty tree
    if _git(sub, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).returncode == 0:
        _git(sub, "read-tree", "-m", "-u", "HEAD")  # HEAD's files, as a checkout writes them
        since = "HEAD"
    apply_snapshot(sub, saved, since)


def delete_recovery_ref(repo: RepoPaths, ref: str, old: str) -> None:
    if not ref.startswith((RECOVERY_PREFIX, SUBMODULE_PREFIX)):
        raise GitError(f"not a recovery ref: {ref}")
    _git(repo.main, "update-ref", "-d", ref, old)


def tree_of(repo: RepoPaths, commit: str) -> str:
    return _git(repo.main, "rev-parse", f"{commit}^{{tree}}").stdout.strip()
