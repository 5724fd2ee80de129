"""Recovery refs: snapshots of a task's branch and files (submodules and nested repositories too), and
putting them back."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from muxagent.errors import GitError
from muxagent.git.repository import RepoPaths, branch_tip
from muxagent.git.runner import NO_HOOKS, REPO_ENV, error_line, run_git, run_git_binary
from muxagent.git.worktree_status import (
    hidden_edits,
    is_regular_file,
    precious_ignored,
    read_status,
    scratch_index,
    work_index,
)
from muxagent.git.worktrees import checkout_pending, worktree_present

RECOVERY_PREFIX = "refs/mux/recovery/"

# refs/mux/submodules/<task>/<stamp of its recovery ref>/<submodule path>
SUBMODULE_PREFIX = "refs/mux/submodules/"

# Recovery commits are mux's own snapshots; a fixed identity means they never fail for want of `user.name`.
MUX_IDENTITY = {
    "GIT_AUTHOR_NAME": "mux",
    "GIT_AUTHOR_EMAIL": "mux@localhost",
    "GIT_COMMITTER_NAME": "mux",
    "GIT_COMMITTER_EMAIL": "mux@localhost",
}


def snapshot_tree(worktree: Path, precious: list[str], exact: Sequence[str] = ()) -> str:
    """A tree of the worktree as it is on disk, plus the precious ignored files (while its checkout is pending:
    HEAD's tree with the files someone put there, the files not checked out yet kept as they are in HEAD).
    The files in `exact` hold their bytes on disk, not what git's filters make of them (see _store_exact).
    Repositories of their own among them (paths ending in /) are left out: see _save_repository."""
    pending = checkout_pending(worktree)
    # `add` would store a nested repository as a gitlink, a bare commit id (and fail on one with no commit);
    # the ignored ones `add -A` leaves out anyway (and naming them in a pathspec makes it fail).
    apart = [f":(exclude,literal){path.rstrip('/')}" for path in exact if path.endswith("/") and path not in precious]
    precious = [path for path in precious if not path.endswith("/")]
    with scratch_index(worktree) as env:
        # No hook runs on these writes of a throwaway index (NO_HOOKS): a repo's post-index-change hook fired on
        # every checkpoint the monitor took, and made the parent agent of test_the_parent_moving_during_the_merge_
        # refuses_it_and_takes_the_childs_commit_back commit before `mux merge` had begun.
        # --sparse: in a sparse checkout, `add` skips the paths outside the sparse cone even when the agent wrote
        # them (` M dir2/y`), and a merge or a recovery ref would drop that edit.
        mode = "--ignore-removal" if pending else "-A"
        run_git(worktree, *NO_HOOKS, "add", "--sparse", mode, "--", ".", *apart, env=env)
        if precious:
            run_git(
                worktree,
                *NO_HOOKS,
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
        return run_git(worktree, *NO_HOOKS, "write-tree", env=env).stdout.strip()


_HASHED_AT_ONCE = 2000  # paths per `git hash-object` argv: well under the 2 MB of ARG_MAX


def _store_exact(worktree: Path, paths: Sequence[str], env: Mapping[str, str]) -> None:
    """Store the regular files among `paths` in the index at `env` with their bytes on disk, no filter applied.

    `git add` stores what the clean filter, `ident` and the eol attributes make of a file: with `* text=auto` an
    uncommitted CRLF file came back from `rm --force` + `restore` as LF. `apply_snapshot` writes them back as
    stored."""
    files = [path for path in paths if is_regular_file(worktree / path)]
    entries = []
    for start in range(0, len(files), _HASHED_AT_ONCE):
        chunk = files[start : start + _HASHED_AT_ONCE]
        ids = run_git(worktree, "hash-object", "-w", "--no-filters", "--", *chunk).stdout.split()
        for path, blob in zip(chunk, ids, strict=True):
            mode = "100755" if os.lstat(worktree / path).st_mode & 0o111 else "100644"
            entries.append(f"{mode} {blob}\t{path}\0")
    if entries:
        run_git(worktree, *NO_HOOKS, "update-index", "-z", "--index-info", env=env, stdin="".join(entries))


def worktree_tree(worktree: Path) -> tuple[str | None, str | None]:
    """(the worktree's HEAD, a tree of its files as they are on disk, precious ignored ones included), the tree
    None when HEAD's holds all of it. What a recovery ref and a checkpoint (checkpoints.py) keep, alike."""
    with work_index(worktree) as env:
        status = read_status(worktree, ignored=True, env=env)
        precious = precious_ignored(worktree, status, env)
    hidden = hidden_edits(worktree)  # `add -A` leaves them out as git status does
    if not (status.tracked or status.untracked or precious or hidden):
        return status.head, None
    return status.head, snapshot_tree(worktree, precious, [*status.tracked, *status.untracked, *precious, *hidden])


def tree_of(cwd: Path, commit: str | None) -> str:
    """A commit's tree; the empty tree for None (a branch with no commit yet)."""
    if commit is None:
        return run_git(cwd, "hash-object", "-w", "-t", "tree", "--stdin", stdin="").stdout.strip()
    return run_git(cwd, "rev-parse", "--verify", "--end-of-options", f"{commit}^{{tree}}").stdout.strip()


def _recovery_commit(name: str, stamp: str, worktree: Path, tip: str | None) -> str | None:
    """Commit the worktree's state on top of the branch tip; None when the tip already holds all of it."""
    head, tree = worktree_tree(worktree)
    if tree is None:
        if head == tip:
            return None
        tree = tree_of(worktree, head)
    # The worktree's own HEAD becomes a second parent when it left the branch (detached, mid-rebase),
    # so its commits stay reachable too.
    parents = [c for c in dict.fromkeys((tip, head)) if c]
    args = ["commit-tree", "--no-gpg-sign", "-m", f"mux recovery: {name} at {stamp}"]
    for parent in parents:
        args += ["-p", parent]
    return run_git(worktree, *args, tree, env=MUX_IDENTITY).stdout.strip()


def write_recovery_ref(repo: RepoPaths, name: str, branch: str, worktree: Path | None) -> str:
    """Save the branch tip plus the worktree's uncommitted, untracked and precious ignored files.

    Returns the new ref, refs/mux/recovery/<name>/<utc timestamp>[-N]. Nothing in the worktree, its index
    or the stash is touched. A worktree missing on disk counts as None.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tip = branch_tip(repo, branch)
    commit = None
    if worktree_present(worktree):
        commit = _recovery_commit(name, stamp, worktree, tip)
    commit = commit or tip
    if commit is None:
        raise GitError(f"nothing to save for {name}: no branch '{branch}' and no worktree")
    ref = _create_ref(repo, f"{RECOVERY_PREFIX}{name}/{stamp}", commit)
    if worktree_present(worktree):
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
    for entry in run_git(worktree, "ls-files", "-s", "-z").stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        sub = worktree / path
        if not meta.startswith("160000 ") or not (sub / ".git").exists() or path not in declared:
            continue
        head = run_git(sub, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
        if not head:
            continue
        status = read_status(sub, ignored=True)
        precious = precious_ignored(sub, status)
        commit = head
        if status.tracked or status.untracked or precious:
            tree = snapshot_tree(sub, precious, [*status.tracked, *status.untracked, *precious])
            message = f"{RECOVERY_SUBJECT}{name} submodule {path} at {stamp}"
            made = run_git(sub, "commit-tree", "--no-gpg-sign", "-p", head, "-m", message, tree, env=MUX_IDENTITY)
            commit = made.stdout.strip()
        elif run_git(sub, "branch", "-r", "--contains", head).stdout.strip():
            continue
        ref = f"{SUBMODULE_PREFIX}{name}/{stamp}/{path}"
        run_git(sub, *NO_HOOKS, "push", "--quiet", "--no-verify", str(repo.common_dir), f"{commit}:{ref}")
        saved.append(ref)
    return saved


def _declared_submodules(worktree: Path) -> set[str]:
    """The submodule paths the worktree's .gitmodules declares."""
    if not (worktree / ".gitmodules").is_file():
        return set()
    return submodule_paths(worktree, "-f", ".gitmodules")


def submodule_paths(cwd: Path, *source: str) -> set[str]:
    """The `submodule.*.path` values of a .gitmodules (`source`: `-f FILE` or `--blob BLOB`)."""
    out = run_git(cwd, "config", *source, "-z", "--get-regexp", r"^submodule\..*\.path$", ok=(0, 1)).stdout
    return {record.partition("\n")[2] for record in out.split("\0") if record}


def _repositories_apart(worktree: Path, declared: set[str]) -> list[str]:
    """Every repository of its own in the worktree that is no declared submodule: untracked, inside an ignored
    folder, or added by hand as a gitlink with no .gitmodules entry."""
    with work_index(worktree) as env:
        status = read_status(worktree, ignored=True, env=env)
        ignored = precious_ignored(worktree, status, env)
    found = [path.rstrip("/") for path in [*status.untracked, *ignored] if path.endswith("/")]
    for entry in run_git(worktree, "ls-files", "-s", "-z").stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith("160000 ") and path not in declared and (worktree / path / ".git").exists():
            found.append(path)
    return found


def _save_repository(repo: RepoPaths, name: str, stamp: str, worktree: Path, path: str) -> str:
    """Push a repository of its own inside the worktree into the repo, under SUBMODULE_PREFIX: one commit of its
    files as they are on disk, whose parents are its HEAD and branches and whose message names them, so that
    restore_submodule can rebuild it (an agent's clone came back from `mux restore` as an empty folder)."""
    sub = worktree / path
    head = run_git(sub, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    on_branch = run_git(sub, "symbolic-ref", "-q", "HEAD", ok=(0, 1)).stdout.strip()
    branches = run_git(sub, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/").stdout.splitlines()
    status = read_status(sub, ignored=True)
    precious = precious_ignored(sub, status)
    tree = snapshot_tree(sub, precious, [*status.tracked, *status.untracked, *precious])
    lines = [f"HEAD {on_branch or head}", *branches]
    message = f"{RECOVERY_SUBJECT}{name} repository {path} at {stamp}\n\n" + "\n".join(lines) + "\n"
    args = ["commit-tree", "--no-gpg-sign", "-m", message]
    for parent in dict.fromkeys(c for c in [head, *(line.split(" ")[-1] for line in branches)] if c):
        args += ["-p", parent]
    commit = run_git(sub, *args, tree, env=MUX_IDENTITY).stdout.strip()
    ref = f"{SUBMODULE_PREFIX}{name}/{stamp}/{path}"
    run_git(sub, *NO_HOOKS, "push", "--quiet", "--no-verify", str(repo.common_dir), f"{commit}:{ref}")
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
    out = run_git(repo.main, "for-each-ref", "--format=%(refname)%00%(objectname)", pattern).stdout
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
        proc = run_git(repo.main, "update-ref", "-m", "mux recovery", candidate, commit, "", ok=(0, 1, 128))
        if proc.returncode == 0:
            return candidate
        if run_git(repo.main, "show-ref", "--verify", "-q", candidate, ok=(0, 1)).returncode != 0:
            raise GitError(f"git update-ref {candidate} failed: {error_line(proc.stderr)}")
    raise GitError(f"too many recovery refs named {ref}")


def list_recovery_refs(repo: RepoPaths, name: str | None = None) -> list[tuple[str, str]]:
    """(refname, sha) of recovery refs, for one task or all, oldest first."""
    pattern = f"{RECOVERY_PREFIX}{name}/" if name else RECOVERY_PREFIX
    out = run_git(repo.main, "for-each-ref", "--format=%(refname)%00%(objectname)", pattern).stdout
    refs = [line.partition("\0")[::2] for line in out.splitlines() if line]
    return sorted(refs, key=lambda r: _stamp_key(r[0]))


def _stamp_key(ref: str) -> tuple[str, int, str]:
    stamp, _, suffix = ref.rsplit("/", 1)[-1].partition("-")
    return stamp, int(suffix) if suffix.isdigit() else 0, ref


RECOVERY_SUBJECT = "mux recovery: "


@dataclass(frozen=True)
class SavedCommit:
    message: str
    parents: tuple[str, ...]


def read_commit(cwd: Path, commit: str) -> SavedCommit:
    """A commit's message and parents, read through GitPython's object model rather than by parsing `git log`:
    restoring is the one thing mux does that reads saved commits, and it can afford the import that the hot
    paths cannot (see run.py)."""
    import git

    with git.Repo(cwd) as found:
        # As for every git call here: variables a git hook exported must not point at another repository.
        found.git.update_environment(**dict.fromkeys(REPO_ENV))
        saved = found.commit(commit)
        return SavedCommit(str(saved.message), tuple(parent.hexsha for parent in saved.parents))


def recovery_parts(repo: RepoPaths, commit: str) -> tuple[str, str | None]:
    """(branch tip, snapshot commit or None) of what a recovery ref points at."""
    saved = read_commit(repo.main, commit)
    if saved.message.startswith(RECOVERY_SUBJECT) and saved.parents:
        return saved.parents[0], commit
    return commit, None


def apply_snapshot(worktree: Path, snapshot: str, since: str = "HEAD") -> None:
    """Put a recovery snapshot's files back in the worktree as uncommitted and untracked changes, byte for byte.

    Each file the snapshot changes from HEAD is written as stored (it holds the bytes that were on disk: no
    smudge filter or eol conversion may touch them, and a sparse checkout must not skip them), each file it
    lacks is deleted (both against `since`, the tree the worktree has). The index stays as it is (at HEAD), so
    nothing is staged behind the user's back.
    """
    fields = iter(run_git(worktree, "diff-tree", "-r", "-z", "--no-renames", since, snapshot).stdout.split("\0"))
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
    proc = run_git_binary(cwd, "cat-file", "--batch", stdin="".join(f"{blob}\n" for blob in unique).encode())
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
        run_git(worktree, *NO_HOOKS, "submodule", "update", "--init", "--quiet", "--", path)
    except GitError:
        # The clone may stand with only the recorded commit missing upstream (the agent's own commit in the
        # submodule, say): the saved ref brings that commit below.
        if not (sub / ".git").exists():
            raise
    run_git(sub, "fetch", "--quiet", "--no-tags", str(repo.common_dir), ref)
    tip, snapshot = recovery_parts(repo, run_git(sub, "rev-parse", "FETCH_HEAD").stdout.strip())
    run_git(sub, *NO_HOOKS, "checkout", "-q", "--detach", tip)
    if snapshot is not None:
        apply_snapshot(sub, snapshot)


def _restore_repository(repo: RepoPaths, sub: Path, ref: str) -> None:
    sub.mkdir(parents=True, exist_ok=True)
    run_git(sub, "init", "-q")
    run_git(sub, "fetch", "--quiet", "--no-tags", str(repo.common_dir), ref)
    saved = run_git(sub, "rev-parse", "FETCH_HEAD").stdout.strip()
    head = ""
    # The message's subject line names neither HEAD nor a branch: its body lists them (see _save_repository).
    for line in read_commit(sub, saved).message.splitlines():
        what, _, value = line.partition(" ")
        if what == "HEAD":
            head = value
        elif what.startswith("refs/heads/"):
            run_git(sub, "update-ref", what, value)
    if head.startswith("refs/"):
        run_git(sub, "symbolic-ref", "HEAD", head)
    elif head:
        run_git(sub, "update-ref", "--no-deref", "HEAD", head)
    since = tree_of(sub, None)
    if run_git(sub, "rev-parse", "--verify", "-q", "HEAD", ok=(0, 1)).returncode == 0:
        run_git(sub, "read-tree", "-m", "-u", "HEAD")  # HEAD's files, as a checkout writes them
        since = "HEAD"
    apply_snapshot(sub, saved, since)


def delete_recovery_ref(repo: RepoPaths, ref: str, old: str) -> None:
    if not ref.startswith((RECOVERY_PREFIX, SUBMODULE_PREFIX)):
        raise GitError(f"not a recovery ref: {ref}")
    run_git(repo.main, "update-ref", "-d", ref, old)
