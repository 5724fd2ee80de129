"""muxagent.git against real git repositories in tmp dirs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git, make_repo

from muxagent.errors import GitError, NotARepoError
from muxagent.git import diffs, recovery_refs, repository, safety, worktrees
from muxagent.git.repository import RepoPaths
from muxagent.git.worktrees import WorktreeInfo


@pytest.fixture
def rp(repo: Path) -> RepoPaths:
    return repository.discover(repo)


@pytest.fixture
def wt(rp: RepoPaths, tmp_path: Path) -> Path:
    """A task worktree on branch mux/t, based on main."""
    path = tmp_path / "worktrees" / "t"
    worktrees.add_worktree(rp, path, "mux/t", "main")
    return path


def commit_file(cwd: Path, name: str, text: str, message: str = "change") -> str:
    (cwd / name).write_text(text)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD").strip()


def snapshot(worktree: Path) -> tuple[str, bytes, int, str, str]:
    """What a user would see change if mux touched their checkout: status, index bytes and mtime, stash."""
    index = Path(git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").strip())
    status = git(worktree, "--no-optional-locks", "status", "--porcelain=v2", "--ignored", "-uall")
    return (
        status,
        index.read_bytes(),
        index.stat().st_mtime_ns,
        git(worktree, "stash", "list"),
        git(worktree, "rev-parse", "HEAD"),
    )


# --- discover --------------------------------------------------------------------------------------------


def test_discover_from_main_subdir_and_linked_worktree(repo: Path, wt: Path) -> None:
    (repo / "src" / "deep").mkdir(parents=True)
    expected = RepoPaths(main=repo.resolve(), common_dir=(repo / ".git").resolve())
    for cwd in (repo, repo / "src" / "deep", wt, repo / ".git"):
        assert repository.discover(cwd) == expected


def test_discover_outside_a_repo(tmp_path: Path) -> None:
    with pytest.raises(NotARepoError, match="not a git repository"):
        repository.discover(tmp_path)
    with pytest.raises(NotARepoError, match="not a git repository"):
        repository.discover(tmp_path / "missing")


def test_discover_refuses_a_bare_repo_even_from_its_worktree(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(bare, "worktree", "add", "-q", str(tmp_path / "bw"), "main")
    for cwd in (bare, tmp_path / "bw"):
        with pytest.raises(NotARepoError, match="bare repository"):
            repository.discover(cwd)


def test_discover_separate_git_dir(tmp_path: Path) -> None:
    work, gitdir = tmp_path / "work", tmp_path / "store.git"
    git(tmp_path, "init", "-q", "-b", "main", "--separate-git-dir", str(gitdir), str(work))
    (work / "sub").mkdir()
    expected = RepoPaths(main=work.resolve(), common_dir=gitdir.resolve())
    assert repository.discover(work) == repository.discover(work / "sub") == expected


# --- refs ------------------------------------------------------------------------------------------------


def test_resolve_commit_and_branch_exists(rp: RepoPaths, repo: Path) -> None:
    assert repository.resolve_commit(rp, "main") == git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(GitError, match="base ref 'nope' does not exist"):
        repository.resolve_commit(rp, "nope")
    with pytest.raises(GitError, match="base ref '--all' does not exist"):
        repository.resolve_commit(rp, "--all")
    assert repository.branch_exists(rp, "main")
    assert not repository.branch_exists(rp, "mux/t")


def test_current_branch_and_detached(repo: Path) -> None:
    assert repository.current_branch(repo) == "main"
    git(repo, "checkout", "-q", "--detach")
    assert repository.current_branch(repo) is None


# --- worktrees -------------------------------------------------------------------------------------------


def test_add_and_remove_worktree_with_awkward_path(rp: RepoPaths, repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "new dir" / 'it\'s "#1" task'
    worktrees.add_worktree(rp, path, "mux/odd", "main")

    assert (path / "README.md").read_text() == "hello\n"
    assert repository.current_branch(path) == "mux/odd"
    entries = worktrees.list_worktrees(rp)
    assert [e.path.resolve() for e in entries] == [repo.resolve(), path.resolve()]
    head = git(repo, "rev-parse", "main").strip()
    assert entries[1] == WorktreeInfo(path.resolve(), head, "mux/odd", locked=False, prunable=False)

    (path / "README.md").write_text("dirty\n")
    (path / "new.txt").write_text("untracked\n")
    worktrees.remove_worktree(rp, path)
    assert not path.exists()
    assert len(worktrees.list_worktrees(rp)) == 1
    assert repository.branch_exists(rp, "mux/odd")  # the branch is the caller's to delete


def test_add_worktree_refuses_existing_branch_path_or_missing_base(rp: RepoPaths, wt: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="branch 'mux/t' already exists"):
        worktrees.add_worktree(rp, tmp_path / "other", "mux/t", "main")
    with pytest.raises(GitError, match="path already exists"):
        worktrees.add_worktree(rp, wt, "mux/u", "main")
    with pytest.raises(GitError, match="base ref 'nope' does not exist"):
        worktrees.add_worktree(rp, tmp_path / "other", "mux/u", "nope")
    assert not repository.branch_exists(rp, "mux/u")


def test_remove_worktree_refuses_main_and_foreign_dirs(rp: RepoPaths, repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="main worktree"):
        worktrees.remove_worktree(rp, repo / "." / "")
    other = make_repo(tmp_path / "other")
    git(other, "worktree", "add", "-q", "-b", "x", str(tmp_path / "other-wt"))
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in (other, tmp_path / "other-wt", plain):
        with pytest.raises(GitError, match="not a linked worktree"):
            worktrees.remove_worktree(rp, path)
        assert path.exists()
    assert (repo / "README.md").exists()


def test_remove_worktree_refuses_locked(rp: RepoPaths, repo: Path, wt: Path) -> None:
    git(repo, "worktree", "lock", str(wt))
    assert worktrees.list_worktrees(rp)[1].locked
    with pytest.raises(GitError, match="locked"):
        worktrees.remove_worktree(rp, wt)
    assert wt.exists()


def test_remove_worktree_deleted_by_hand_prunes_entry(rp: RepoPaths, wt: Path) -> None:
    subprocess.run(["rm", "-rf", str(wt)], check=True)
    assert worktrees.list_worktrees(rp)[1].prunable
    worktrees.remove_worktree(rp, wt)
    assert len(worktrees.list_worktrees(rp)) == 1


def test_delete_branch_refuses_checked_out(rp: RepoPaths, wt: Path) -> None:
    with pytest.raises(GitError, match="mux/t"):
        repository.delete_branch(rp, "mux/t")
    with pytest.raises(GitError, match="main"):
        repository.delete_branch(rp, "main")
    worktrees.remove_worktree(rp, wt)
    repository.delete_branch(rp, "mux/t")
    assert not repository.branch_exists(rp, "mux/t")


# --- changes ---------------------------------------------------------------------------------------------


def test_unsaved_work_follows_a_rename(rp: RepoPaths, repo: Path, tmp_path: Path) -> None:
    commit_file(repo, "old.txt", "1\n2\n3\n4\n5\n")
    wt = tmp_path / "r"
    worktrees.add_worktree(rp, wt, "mux/r", "main")
    git(wt, "mv", "old.txt", "new.txt")
    (wt / "new.txt").write_text("1\n2\n3\n4\nfive\n")
    assert safety.unsaved_work(rp, wt, "mux/r", "main") == ["1 uncommitted change (new.txt)"]


# --- unsaved work ----------------------------------------------------------------------------------------


def test_unsaved_work_clean_task(rp: RepoPaths, wt: Path) -> None:
    assert safety.unsaved_work(rp, wt, "mux/t", "main") == []


def test_unsaved_work_names_each_category(rp: RepoPaths, wt: Path) -> None:
    commit_file(wt, "a.py", "1\n")
    commit_file(wt, "b.py", "2\n")
    (wt / "README.md").write_text("edited\n")
    (wt / "a.py").write_text("staged\n")
    git(wt, "add", "a.py")
    for name in ("n1", "n2", "n3", "n4"):
        (wt / name).write_text(name)
    (wt / ".gitignore").write_text("__pycache__/\n*.log\n.env\n")
    git(wt, "commit", "-q", "-m", "ignore .env", ".gitignore")
    (wt / ".env").write_text("SECRET=1\n")
    (wt / "__pycache__").mkdir()
    (wt / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")

    assert safety.unsaved_work(rp, wt, "mux/t", "main") == [
        "2 uncommitted changes (README.md, a.py)",
        "4 untracked files (n1, n2, n3, ...)",
        "1 ignored file (.env)",
        "3 commits not in main",
    ]
    # Deleted by hand: only the branch's commits are left to lose.
    assert safety.unsaved_work(rp, None, "mux/t", "main") == ["3 commits not in main"]


def test_unsaved_work_ignores_rebuildable_caches(rp: RepoPaths, wt: Path) -> None:
    patterns = ["*.pyc", "node_modules/", "build/", "*.egg-info/", ".venv/", ".pytest_cache/", "data/"]
    (rp.common_dir / "info").mkdir(exist_ok=True)
    (rp.common_dir / "info" / "exclude").write_text("\n".join(patterns) + "\n")
    caches = ["__pycache__/m.pyc", "pkg/x.pyc", "node_modules/a/i.js", "build/o", "p.egg-info/PKG-INFO"]
    for rel in [*caches, ".venv/bin/python", "sub/.pytest_cache/v"]:
        (wt / rel).parent.mkdir(parents=True, exist_ok=True)
        (wt / rel).write_text("cache")
    assert safety.unsaved_work(rp, wt, "mux/t", "main") == []
    (wt / "data" / "__pycache__").mkdir(parents=True)
    (wt / "data" / "__pycache__" / "d.pyc").write_text("cache")
    (wt / "data" / "db.sqlite").write_text("precious")
    assert safety.unsaved_work(rp, wt, "mux/t", "main") == ["1 ignored file (data/db.sqlite)"]
    ref = recovery_refs.write_recovery_ref(rp, "t", "mux/t", wt)
    assert git(wt, "ls-tree", "-r", "--name-only", ref, "data") == "data/db.sqlite\n"


def test_squash_merged_branch_counts_as_merged(rp: RepoPaths, repo: Path, wt: Path) -> None:
    commit_file(wt, "a.txt", "a\n")
    commit_file(wt, "b.txt", "b\n")
    assert safety.unsaved_work(rp, None, "mux/t", "main") == ["2 commits not in main"]
    git(repo, "merge", "-q", "--squash", "mux/t")
    git(repo, "commit", "-q", "-m", "squash")
    commit_file(repo, "later.txt", "base moved on\n")
    assert safety.unsaved_work(rp, wt, "mux/t", "main") == []


def test_cherry_picked_commit_counts_as_merged_after_base_rewrote_it(rp: RepoPaths, repo: Path, wt: Path) -> None:
    picked = commit_file(wt, "README.md", "hello from task\n")
    commit_file(wt, "extra.txt", "not picked\n")
    git(repo, "cherry-pick", picked)
    commit_file(repo, "README.md", "base rewrote it again\n")  # a merge now conflicts
    assert safety.unsaved_work(rp, None, "mux/t", "main") == ["1 commit not in main"]
    git(repo, "cherry-pick", "mux/t")
    assert safety.unsaved_work(rp, None, "mux/t", "main") == []


def test_unsaved_work_sees_commits_on_a_detached_head(rp: RepoPaths, wt: Path) -> None:
    git(wt, "checkout", "-q", "--detach")
    commit_file(wt, "lost.txt", "only here\n")
    assert safety.unsaved_work(rp, wt, "mux/t", "main") == ["1 commit on a detached HEAD, not on any branch"]


def test_unsaved_work_with_a_missing_base_counts_the_commits_no_other_branch_has(rp: RepoPaths, wt: Path) -> None:
    assert safety.unsaved_work(rp, None, "mux/t", "gone") == []  # all of it is in main
    commit_file(wt, "t.txt", "t\n")
    assert safety.unsaved_work(rp, None, "mux/t", "gone") == ["1 commit on no other branch (its base gone is gone)"]


# --- recovery refs ---------------------------------------------------------------------------------------


def test_recovery_ref_captures_everything_without_touching_the_checkout(rp: RepoPaths, repo: Path, wt: Path) -> None:
    (repo / "stashed.txt").write_text("user's stash\n")
    git(repo, "stash", "push", "-q", "-u")
    tip = commit_file(wt, "committed.txt", "committed\n")
    (wt / "README.md").write_text("unstaged edit\n")
    (wt / "staged.txt").write_text("staged\n")
    git(wt, "add", "staged.txt")
    (wt / "new.txt").write_text("untracked\n")
    (wt / ".env").write_text("TOKEN=abc\n")
    (wt / ".gitignore").write_text("__pycache__/\n*.log\n.env\n")
    (wt / "__pycache__").mkdir()
    (wt / "__pycache__" / "c.pyc").write_bytes(b"\0cache")
    git(wt, "status")
    before = snapshot(wt)

    ref = recovery_refs.write_recovery_ref(rp, "t", "mux/t", wt)

    assert snapshot(wt) == before
    assert git(repo, "stash", "list").count("\n") == 1
    assert ref.startswith("refs/mux/recovery/t/")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    for path, text in [
        ("README.md", "unstaged edit\n"),
        ("staged.txt", "staged\n"),
        ("new.txt", "untracked\n"),
        (".env", "TOKEN=abc\n"),
        ("committed.txt", "committed\n"),
    ]:
        assert git(repo, "show", f"{ref}:{path}") == text
    assert "__pycache__" not in git(repo, "ls-tree", "--name-only", ref)
    assert git(repo, "rev-parse", f"{ref}^").strip() == tip
    assert git(repo, "log", "-1", "--format=%s", ref).startswith("mux recovery: t at ")


def test_recovery_ref_of_clean_or_vanished_task_is_the_branch_tip(rp: RepoPaths, wt: Path) -> None:
    tip = commit_file(wt, "a.txt", "a\n")
    refs = [
        recovery_refs.write_recovery_ref(rp, "t", "mux/t", wt),
        recovery_refs.write_recovery_ref(rp, "t", "mux/t", None),
        recovery_refs.write_recovery_ref(rp, "t", "mux/t", None),
    ]
    assert len(set(refs)) == 3  # same second: suffixed, never overwritten
    listed = recovery_refs.list_recovery_refs(rp, "t")
    assert listed == [(ref, tip) for ref in refs]
    assert recovery_refs.list_recovery_refs(rp, "other") == []
    t2 = recovery_refs.write_recovery_ref(rp, "t2", "mux/t", None)
    assert recovery_refs.list_recovery_refs(rp, "t") == listed
    assert sorted(recovery_refs.list_recovery_refs(rp)) == sorted([*listed, (t2, tip)])


def test_recovery_ref_keeps_detached_commits_reachable(rp: RepoPaths, repo: Path, wt: Path) -> None:
    git(wt, "checkout", "-q", "--detach")
    lost = commit_file(wt, "lost.txt", "only here\n")
    ref = recovery_refs.write_recovery_ref(rp, "t", "mux/t", wt)
    assert git(repo, "rev-parse", f"{ref}^1").strip() == git(repo, "rev-parse", "mux/t").strip()
    assert git(repo, "rev-parse", f"{ref}^2").strip() == lost


def test_recovery_ref_without_branch_or_worktree_fails(rp: RepoPaths) -> None:
    with pytest.raises(GitError, match="no branch 'mux/none'"):
        recovery_refs.write_recovery_ref(rp, "none", "mux/none", None)
    assert recovery_refs.list_recovery_refs(rp) == []


# --- diff ------------------------------------------------------------------------------------------------


def test_diff_shows_committed_uncommitted_and_untracked(repo: Path, wt: Path) -> None:
    commit_file(wt, "feature.py", "a\nb\n")
    (wt / "README.md").write_text("bye\n")
    (wt / "new file.txt").write_text("fresh\n")
    commit_file(wt, "doomed.txt", "x\ny\n")
    (wt / "doomed.txt").unlink()
    commit_file(repo, "base-only.txt", "not the task's\n")
    git(wt, "status")
    before = snapshot(wt)

    patch = diffs.diff(wt, "main")
    assert "+bye" in patch and "-hello" in patch
    assert "+a\n+b\n" in patch
    assert "new file.txt" in patch and "+fresh" in patch
    assert "base-only" not in patch and "doomed" not in patch
    stat = diffs.diff(wt, "main", stat=True)
    assert "3 files changed, 4 insertions(+), 1 deletion(-)" in stat
    assert snapshot(wt) == before
