"""What recovery snapshots, lost-work checks and merges hold, whatever the worktree's content (issue 10).

The promises held here, each by the tests named beside it:
- an ignored file counts as a rebuildable cache only inside a folder that is itself ignored and named like one:
  `test_rm_keeps_an_ignored_file_inside_a_tracked_build_folder`,
  `test_an_ignored_cache_folder_inside_a_tracked_folder_is_still_a_cache`;
- a recovery snapshot holds a file's exact bytes (no eol conversion, no clean filter) and restore writes them back:
  `test_rm_force_and_restore_keep_each_files_exact_bytes`;
- in a sparse checkout, work outside the sparse cone is merged and saved like any other:
  `test_merge_brings_home_an_edit_outside_the_sparse_cone`,
  `test_rm_force_and_restore_keep_an_edit_outside_the_sparse_cone`;
- an edit git status hides (a file marked assume-unchanged or skip-worktree in the task) is work to `rm`, saved by
  `--force`, and refused by `merge` by name: `test_rm_keeps_an_edit_to_a_file_marked_assume_unchanged_in_the_task`,
  `test_merge_refuses_an_edit_git_status_hides_in_the_task`;
- a repository of its own in a task (an agent's clone) is work to `rm`, is saved by `rm --force` with its files,
  branches and HEAD and made again by `restore`, and `merge` refuses it (and any undeclared gitlink) by name:
  `test_rm_refuses_a_nested_repository_by_name`,
  `test_rm_force_and_restore_bring_back_a_nested_repository_with_its_history_and_files`,
  `test_merge_refuses_a_nested_repository_by_name_and_changes_nothing`,
  `test_merge_refuses_a_gitlink_no_gitmodules_declares`,
  `test_diff_shows_the_task_files_beside_a_repository_with_no_commit_yet`;
- a merge refused at any step, even by git's final fast-forward, leaves the task's branch, index and files as they
  were, and names the file in the way:
  `test_a_merge_refused_for_an_assume_unchanged_edit_names_it_and_leaves_the_task_as_it_was`,
  `test_a_merge_git_refuses_at_the_last_step_leaves_the_task_uncommitted`;
- a merge refused for a dirty submodule says truthfully what would save it:
  `test_merge_refusing_a_dirty_submodule_says_what_would_save_it`;
- a repo made with `git init --separate-git-dir` merges like any other, and its agents run mux in their panes:
  `test_a_repo_made_with_separate_git_dir_merges`,
  `test_an_agent_runs_mux_from_its_worktree_of_a_separate_git_dir_repo`;
- git's errors are quoted by their error line, not by the progress line before it:
  `test_a_full_disk_is_quoted_by_gits_error_not_its_progress_line`,
  `test_git_errors_are_quoted_by_the_line_that_says_what_failed`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, run_mux
from merge_helpers import checkout_state, commit_file, start

from muxagent.git import runner

pytestmark = pytest.mark.usefixtures("fake_profile")


def recovery_ref(out: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("recovery ref: "))


def commit_with_ignore_rule(repo: Path, pattern: str, tracked: str) -> None:
    (repo / ".gitignore").write_text(pattern + "\n")
    commit_file(repo, tracked, "tracked\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", f"ignore {pattern}")


def test_rm_keeps_an_ignored_file_inside_a_tracked_build_folder(repo: Path) -> None:
    commit_with_ignore_rule(repo, "*.local", "build/release.sh")
    worktree = start(repo, "a")
    (worktree / "build" / "signing.local").write_text("key\n")
    refused = run_mux("rm", "a", cwd=repo, check=False)
    assert refused.returncode == 1 and "build/signing.local" in refused.stderr
    ref = recovery_ref(run_mux("rm", "--force", "a", cwd=repo).stdout)
    assert git(repo, "show", f"{ref}:build/signing.local") == "key\n"


def test_an_ignored_cache_folder_inside_a_tracked_folder_is_still_a_cache(repo: Path) -> None:
    commit_with_ignore_rule(repo, "node_modules/", "web/index.js")
    worktree = start(repo, "b")
    (worktree / "web" / "node_modules" / "left-pad").mkdir(parents=True)
    (worktree / "web" / "node_modules" / "left-pad" / "index.js").write_text("pad\n")
    run_mux("rm", "b", cwd=repo)
    assert not worktree.exists()


def restore_after_rm_force(repo: Path, name: str) -> str:
    """`mux rm --force NAME`, then `mux restore` at the ref it printed; returns that ref."""
    ref = recovery_ref(run_mux("rm", "--force", name, cwd=repo).stdout)
    git(repo, "gc", "-q", "--prune=now")
    run_mux("restore", name, "--at", ref.rsplit("/", 1)[-1], cwd=repo)
    return ref


def test_rm_force_and_restore_keep_each_files_exact_bytes(repo: Path) -> None:
    (repo / ".gitattributes").write_text("* text=auto\n*.up filter=upper\n")
    git(repo, "config", "filter.upper.clean", "tr a-z A-Z")
    git(repo, "config", "filter.upper.smudge", "cat")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-qm", "attributes")
    worktree = start(repo, "eol")
    files = {"new.txt": b"one\r\ntwo\r\n", "README.md": b"hello\r\n", "notes.up": b"lower case\n"}
    for path, content in files.items():
        (worktree / path).write_bytes(content)
    ref = restore_after_rm_force(repo, "eol")
    for path, content in files.items():
        shown = subprocess.run(["git", "cat-file", "blob", f"{ref}:{path}"], cwd=repo, capture_output=True)
        assert shown.stdout == content
        assert (worktree / path).read_bytes() == content


def sparse_task(repo: Path, name: str) -> Path:
    """A task of a repo whose main checkout has only dir1/ (`git sparse-checkout set dir1`), whose agent
    edited dir2/y anyway."""
    commit_file(repo, "dir1/x", "x\n")
    commit_file(repo, "dir2/y", "y\n")
    git(repo, "sparse-checkout", "set", "dir1")
    worktree = start(repo, name)
    (worktree / "dir2").mkdir(exist_ok=True)
    (worktree / "dir2" / "y").write_text("edited\n")
    assert git(worktree, "status", "--porcelain") == " M dir2/y\n"
    return worktree


def test_merge_brings_home_an_edit_outside_the_sparse_cone(repo: Path) -> None:
    sparse_task(repo, "sparse")
    run_mux("merge", "sparse", cwd=repo)
    assert git(repo, "show", "main:dir2/y") == "edited\n"


def test_rm_force_and_restore_keep_an_edit_outside_the_sparse_cone(repo: Path) -> None:
    worktree = sparse_task(repo, "sparse")
    ref = restore_after_rm_force(repo, "sparse")
    assert git(repo, "show", f"{ref}:dir2/y") == "edited\n"
    assert (worktree / "dir2" / "y").read_text() == "edited\n"
    assert git(worktree, "status", "--porcelain") == " M dir2/y\n"


def refused_merge(repo: Path, worktree: Path, name: str) -> str:
    """`mux merge NAME`, which must refuse and change nothing in the task or the main checkout; its stderr."""
    task_before, main_before = checkout_state(worktree), checkout_state(repo)
    refused = run_mux("merge", name, cwd=repo, check=False)
    assert refused.returncode == 1
    assert checkout_state(worktree) == task_before and checkout_state(repo) == main_before
    return refused.stderr


def task_with_uncommitted_work(repo: Path, name: str) -> Path:
    worktree = start(repo, name)
    commit_file(worktree, "README.md", "the task's version\n")
    (worktree / "wip.txt").write_text("uncommitted\n")
    (worktree / "staged.txt").write_text("staged\n")
    git(worktree, "add", "staged.txt")
    return worktree


def test_a_merge_refused_for_an_assume_unchanged_edit_names_it_and_leaves_the_task_as_it_was(repo: Path) -> None:
    worktree = task_with_uncommitted_work(repo, "hidden")
    git(repo, "update-index", "--assume-unchanged", "README.md")
    (repo / "README.md").write_text("a local edit git status does not show\n")
    assert "README.md" in refused_merge(repo, worktree, "hidden")


def test_a_merge_git_refuses_at_the_last_step_leaves_the_task_uncommitted(repo: Path) -> None:
    worktree = task_with_uncommitted_work(repo, "late")
    lock = repo / ".git" / "index.lock"  # the user's own git is running in the main checkout
    lock.write_text("")
    task_before = checkout_state(worktree)
    refused = run_mux("merge", "late", cwd=repo, check=False)
    assert refused.returncode == 1 and "index.lock" in refused.stderr
    assert checkout_state(worktree) == task_before
    lock.unlink()
    run_mux("merge", "late", cwd=repo)
    assert (repo / "wip.txt").read_text() == "uncommitted\n"


def separate_git_dir_repo(tmp_path: Path) -> Path:
    """`git init --separate-git-dir`: `git worktree list` names the git dir as the main worktree."""
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", "--separate-git-dir", str(tmp_path / "store.git"), str(work))
    commit_file(work, "README.md", "hello\n")
    return work


def test_a_repo_made_with_separate_git_dir_merges(tmp_path: Path) -> None:
    work = separate_git_dir_repo(tmp_path)
    worktree = start(work, "sep")
    commit_file(worktree, "feature.txt", "done\n")
    run_mux("merge", "sep", cwd=work)
    assert (work / "feature.txt").read_text() == "done\n"


def test_a_full_disk_is_quoted_by_gits_error_not_its_progress_line(repo: Path, tmp_path: Path) -> None:
    commit_file(repo, "big.bin", "x" * (2 << 20))
    worktree = start(repo, "full")
    commit_file(worktree, "feature.txt", "done\n")
    commit_file(repo, "base.txt", "moved\n")
    # Every git mux runs can write no file past 1 MB, and gets EFBIG when it tries, as on a full disk.
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    real = shutil.which("git")
    wrapper.write_text(f"#!/bin/sh\nulimit -f 2048\ntrap '' XFSZ\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}"}
    argv = [sys.executable, "-m", "muxagent", "merge", "--rebase", "full"]
    proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "unable to write file big.bin" in proc.stderr and "Preparing" not in proc.stderr


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        (
            "The following paths and/or pathspecs matched paths that exist\n"
            "outside of your sparse-checkout definition, so will not be\nupdated in the index:\ndir2/y\n"
            "hint: If you intend to update such entries, try one of the following:\n",
            "The following paths and/or pathspecs matched paths that exist outside of your sparse-checkout"
            " definition, so will not be updated in the index: dir2/y",
        ),
        (
            "error: Your local changes to the following files would be overwritten by merge:\n\tf\n\tg\n"
            "Please commit your changes or stash them before you merge.\nAborting\n",
            "error: Your local changes to the following files would be overwritten by merge: f, g",
        ),
        (
            "Preparing worktree (new branch 'x')\nfatal: could not create directory: No space left on device\n",
            "fatal: could not create directory: No space left on device",
        ),
        ("", "no error message"),
    ],
    ids=["wrapped-sentence-and-list", "indented-list", "progress-line-first", "silent"],
)
def test_git_errors_are_quoted_by_the_line_that_says_what_failed(stderr: str, said: str) -> None:
    assert runner.error_line(stderr) == said


def clone_in(worktree: Path, path: str) -> Path:
    """What an agent's `git clone` leaves: a repository of its own with two branches, an uncommitted edit and an
    untracked file."""
    nested = worktree / path
    nested.mkdir(parents=True)
    git(nested, "init", "-q", "-b", "trunk")
    commit_file(nested, "lib.py", "v1\n", "first")
    git(nested, "branch", "side")
    commit_file(nested, "lib.py", "v2\n", "second")
    (nested / "lib.py").write_text("uncommitted\n")
    (nested / "notes.txt").write_text("untracked\n")
    return nested


def test_rm_refuses_a_nested_repository_by_name(repo: Path) -> None:
    worktree = start(repo, "clone")
    clone_in(worktree, "vendored")
    refused = run_mux("rm", "clone", cwd=repo, check=False)
    assert refused.returncode == 1 and "1 nested git repo (vendored/)" in refused.stderr


def test_rm_force_and_restore_bring_back_a_nested_repository_with_its_history_and_files(repo: Path) -> None:
    worktree = start(repo, "clone")
    nested = clone_in(worktree, "deps/vendored")
    (worktree / "empty").mkdir()
    git(worktree / "empty", "init", "-q", "-b", "fresh")  # no commit yet: `git add` used to fail on it
    with (worktree / ".gitignore").open("a") as ignore:
        ignore.write("vendor/\n")
    ignored = clone_in(worktree, "vendor/lib")
    histories = {path: git(path, "log", "--format=%H %s", "trunk", "side") for path in (nested, ignored)}
    restore_after_rm_force(repo, "clone")
    for path, history in histories.items():
        assert git(path, "log", "--format=%H %s", "trunk", "side") == history
    assert git(nested, "symbolic-ref", "HEAD") == "refs/heads/trunk\n"
    assert git(nested, "status", "--porcelain") == " M lib.py\n?? notes.txt\n"
    assert (nested / "lib.py").read_text() == "uncommitted\n"
    assert git(worktree / "empty", "symbolic-ref", "HEAD") == "refs/heads/fresh\n"
    assert git(worktree, "status", "--porcelain") == " M .gitignore\n?? deps/\n?? empty/\n"


def test_merge_refuses_a_nested_repository_by_name_and_changes_nothing(repo: Path) -> None:
    worktree = start(repo, "clone")
    clone_in(worktree, "vendored")
    (worktree / "feature.txt").write_text("work\n")
    said = refused_merge(repo, worktree, "clone")
    assert "vendored" in said and "submodule" in said


def test_merge_refuses_a_gitlink_no_gitmodules_declares(repo: Path) -> None:
    worktree = start(repo, "clone")
    clone_in(worktree, "vendored")
    git(worktree, "add", "vendored")
    git(worktree, "commit", "-qm", "vendor it")
    main_before = checkout_state(repo)
    refused = run_mux("merge", "clone", "--keep", cwd=repo, check=False)
    assert refused.returncode == 1 and "vendored" in refused.stderr and ".gitmodules" in refused.stderr
    assert checkout_state(repo) == main_before


def test_diff_shows_the_task_files_beside_a_repository_with_no_commit_yet(repo: Path) -> None:
    worktree = start(repo, "init")
    (worktree / "fresh").mkdir()
    git(worktree / "fresh", "init", "-q")
    (worktree / "feature.txt").write_text("work\n")
    assert "+work" in run_mux("diff", "init", cwd=repo).stdout


def test_merge_refusing_a_dirty_submodule_says_what_would_save_it(repo: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    commit_file(lib, "lib.py", "v1\n")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "add lib")
    worktree = start(repo, "sub")
    git(worktree, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
    (worktree / "lib" / "lib.py").write_text("edited inside the submodule\n")
    refused = run_mux("merge", "sub", cwd=repo, check=False)
    assert refused.returncode == 1 and "submodule lib" in refused.stderr
    assert "recovery ref can hold" not in refused.stderr and "rm --force sub` would save them" in refused.stderr


def test_an_agent_runs_mux_from_its_worktree_of_a_separate_git_dir_repo(tmp_path: Path) -> None:
    work = separate_git_dir_repo(tmp_path)
    worktree = start(work, "sep")
    argv = [sys.executable, "-m", "muxagent", "ls", "--json"]
    in_pane = subprocess.run(argv, cwd=worktree, env={**os.environ, "MUX_REPO": str(work)}, capture_output=True)
    assert in_pane.returncode == 0 and b'"sep"' in in_pane.stdout
    elsewhere = subprocess.run(argv, cwd=worktree, capture_output=True, text=True)
    assert elsewhere.returncode == 1 and "cannot find the main checkout" in elsewhere.stderr


def test_rm_keeps_an_edit_to_a_file_marked_assume_unchanged_in_the_task(repo: Path) -> None:
    worktree = start(repo, "hid")
    git(worktree, "update-index", "--assume-unchanged", "README.md")
    (worktree / "README.md").write_text("an edit git status does not show\n")
    refused = run_mux("rm", "hid", cwd=repo, check=False)
    assert refused.returncode == 1 and "1 edit (README.md) git status hides" in refused.stderr
    ref = restore_after_rm_force(repo, "hid")
    assert git(repo, "show", f"{ref}:README.md") == "an edit git status does not show\n"
    assert (worktree / "README.md").read_text() == "an edit git status does not show\n"


def test_merge_refuses_an_edit_git_status_hides_in_the_task(repo: Path) -> None:
    worktree = start(repo, "hid")
    git(worktree, "update-index", "--skip-worktree", "README.md")
    (worktree / "README.md").write_text("an edit git status does not show\n")
    said = refused_merge(repo, worktree, "hid")
    assert "README.md" in said and "skip-worktree" in said
