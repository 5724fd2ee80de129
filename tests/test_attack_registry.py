"""Registry, tmux scoping, crash recovery and rollback under attack (issue 10).

The promises held here, each by the test named beside it:
- mux targets only its own repository's tmux windows, never another repository's task of the same name:
  `test_a_lost_registry_never_adopts_another_repositorys_window`;
- an interrupted command is rolled back unless it was past its point of no return, and named as what it was:
  `test_an_interrupted_plain_rm_is_rolled_back_not_finished_as_force`,
  `test_an_interrupted_restore_is_rolled_back_and_restore_still_brings_the_files`,
  `test_an_interrupted_clean_is_named_as_what_the_user_ran`;
- a removed task stays removed, and a made one keeps its record, even after a crash and a lost registry:
  `test_a_crash_after_rm_then_a_lost_registry_does_not_resurrect_the_task`,
  `test_a_crash_after_new_then_a_lost_registry_keeps_the_tasks_agent_and_prompt`;
- mux never deletes a worktree it did not create: `test_clean_never_deletes_a_worktree_mux_did_not_create`;
- `mux new` and `mux restore` create everything or nothing, and say what failed:
  `test_a_failing_worktree_add_leaves_no_branch_and_the_name_usable`,
  `test_a_failing_post_checkout_hook_rolls_a_restore_back_whole`;
- a task whose base is gone can still be removed, and `clean` goes on with the other tasks:
  `test_a_task_whose_base_is_gone_can_be_removed_and_clean_goes_on`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import libtmux
import pytest
from conftest import git, make_repo, mux_ls, run_mux, window_tasks
from merge_helpers import commit_file, start
from test_faults import assert_consistent, crash
from test_removal import window_ids

pytestmark = pytest.mark.usefixtures("fake_profile")


def test_a_lost_registry_never_adopts_another_repositorys_window(tmp_path: Path, tmux_socket: str) -> None:
    aaa, bbb = make_repo(tmp_path / "aaa"), make_repo(tmp_path / "bbb")
    start(aaa, "fix")
    start(bbb, "fix")
    theirs, ours = mux_ls(aaa)["fix"]["window"], mux_ls(bbb)["fix"]["window"]
    (bbb / ".git" / "mux" / "tasks.json").unlink()
    assert mux_ls(bbb)["fix"]["window"] == ours
    run_mux("rm", "--force", "fix", cwd=bbb)
    assert theirs in window_ids(tmux_socket), "another repository's agent was killed"
    assert ours not in window_ids(tmux_socket)
    assert mux_ls(aaa)["fix"]["state"] != "missing"


def test_a_recorded_window_id_that_is_now_another_repositorys_is_never_killed(tmp_path: Path, tmux_socket: str) -> None:
    aaa, bbb = make_repo(tmp_path / "aaa"), make_repo(tmp_path / "bbb")
    start(aaa, "fix")
    start(bbb, "fix")
    theirs = mux_ls(aaa)["fix"]["window"]
    registry = bbb / ".git" / "mux" / "tasks.json"
    doc = json.loads(registry.read_text())
    doc["tasks"]["fix"]["window"] = theirs  # as a registry written by a mux that adopted it
    registry.write_text(json.dumps(doc))
    # Not the other repository's agent's state, at once: the hand-edited registry keeps its generation, but the live
    # view names its file's size, mtime and inode too, so the view of the record before is not shown.
    assert mux_ls(bbb)["fix"]["state"] == "missing"
    run_mux("rm", "--force", "fix", cwd=bbb)
    assert theirs in window_ids(tmux_socket)
    assert mux_ls(aaa)["fix"]["window"] == theirs
    assert window_tasks(libtmux.Server(socket_name=tmux_socket)) == ["fix"]  # theirs: ours went with the task


def test_an_interrupted_plain_rm_is_rolled_back_not_finished_as_force(repo: Path) -> None:
    worktree = start(repo, "wip")
    (worktree / "draft.txt").write_text("only here\n")
    # Killed while it checks for unsaved work, as Ctrl-C would: it had not decided anything yet.
    crash(repo, "rm", "wip", at="rm:while-checking")
    proc = run_mux("ls", "--json", cwd=repo)
    assert "an interrupted `mux rm wip` had not removed anything yet" in proc.stderr
    assert "wip" in mux_ls(repo)
    assert (worktree / "draft.txt").read_text() == "only here\n"
    refused = run_mux("rm", "wip", cwd=repo, check=False)
    assert refused.returncode == 1 and "untracked" in refused.stderr


def test_an_interrupted_clean_is_named_as_what_the_user_ran(repo: Path) -> None:
    dot_git = start(repo, "done") / ".git"
    crash(repo, "clean", at="rm:after-recovery-ref")
    link = dot_git.read_text()
    dot_git.write_text("gitdir: /nonexistent\n")  # so that finishing it fails, and doctor tells of it
    doctor = run_mux("doctor", cwd=repo).stdout
    assert "`mux clean` of 'done' was interrupted" in doctor, doctor
    dot_git.write_text(link)
    proc = run_mux("ls", "--json", cwd=repo)
    assert "finished an interrupted `mux clean` (removing done)" in proc.stderr
    assert mux_ls(repo) == {}


@pytest.mark.parametrize(
    ("command", "step"), [(("rm", "--force"), "rm:after-record"), (("merge",), "merge:after-record")]
)
def test_a_crash_after_rm_then_a_lost_registry_does_not_resurrect_the_task(
    repo: Path, command: tuple[str, ...], step: str
) -> None:
    start(repo, "gone")
    start(repo, "kept")
    crash(repo, *command, "gone", at=step)
    assert set(mux_ls(repo)) == {"kept"}  # the next command finishes what the crash cut short
    (repo / ".git" / "mux" / "tasks.json").unlink()  # and then the registry is lost
    assert set(mux_ls(repo)) == {"kept"}  # rebuilt from the journal (by this `ls` or by the monitor)
    assert '"action":"rebuild"' in (repo / ".git" / "mux" / "journal.jsonl").read_text()


def test_a_crash_after_new_then_a_lost_registry_keeps_the_tasks_agent_and_prompt(repo: Path) -> None:
    crash(repo, "new", "fresh", "-a", "fake", "-p", "do it", at="new:after-record")
    (repo / ".git" / "mux" / "tasks.json").unlink()
    row = mux_ls(repo)["fresh"]
    assert (row["agent"], row["prompt"]) == ("fake", "do it")  # from the journal, not adopted as `unknown`


@pytest.mark.parametrize("step", ["restore:after-worktree", "restore:after-window"])
def test_an_interrupted_restore_is_rolled_back_and_restore_still_brings_the_files(
    repo: Path, tmux_socket: str, step: str
) -> None:
    worktree = start(repo, "back")
    commit_file(worktree, "committed.txt", "committed\n")
    (worktree / "draft.txt").write_text("uncommitted\n")
    run_mux("rm", "--force", "back", cwd=repo)
    crash(repo, "restore", "back", at=step)
    proc = run_mux("ls", "--json", cwd=repo)
    assert "rolled back an interrupted `mux restore back`" in proc.stderr, proc.stderr
    assert assert_consistent(repo, tmux_socket) == {}
    restore = run_mux("restore", "back", cwd=repo)
    assert "with its uncommitted files" in restore.stdout
    worktree = Path(mux_ls(repo)["back"]["worktree"])
    assert (worktree / "draft.txt").read_text() == "uncommitted\n"
    assert (worktree / "committed.txt").read_text() == "committed\n"


def test_clean_never_deletes_a_worktree_mux_did_not_create(repo: Path) -> None:
    elsewhere = Path(os.environ["HOME"]) / "elsewhere" / "feature"
    git(repo, "worktree", "add", "-q", "-b", "mux/feature", str(elsewhere))
    commit_file(elsewhere, "f.txt", "feature\n")
    git(repo, "merge", "-q", "--no-edit", "mux/feature")  # merged: `clean` would take it, were it a task
    assert "feature" not in mux_ls(repo)
    run_mux("clean", cwd=repo)
    assert (elsewhere / "f.txt").read_text() == "feature\n"
    assert "mux/feature" in git(repo, "branch", "--list")
    assert f"worktree {elsewhere} has no task record" in run_mux("doctor", cwd=repo).stdout


def test_a_failing_worktree_add_leaves_no_branch_and_the_name_usable(repo: Path) -> None:
    (repo / ".git" / "worktrees").write_text("")  # git cannot make the worktree's folder (root or not)
    proc = run_mux("new", "x", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "already exists" not in proc.stderr and "Traceback" not in proc.stderr
    assert "fatal: could not create leading directories" in proc.stderr  # git's error, not its progress line
    assert git(repo, "branch", "--list", "mux/*") == ""
    assert not (repo.parent / "proj.worktrees").exists()
    (repo / ".git" / "worktrees").unlink()
    assert start(repo, "x").is_dir()


def test_a_failing_post_checkout_hook_rolls_a_restore_back_whole(repo: Path) -> None:
    (start(repo, "hooked") / "draft.txt").write_text("uncommitted\n")
    run_mux("rm", "--force", "hooked", cwd=repo)
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho checking >&2\necho 'lefthook: post-checkout failed' >&2\nexit 3\n")
    hook.chmod(0o755)
    proc = run_mux("restore", "hooked", cwd=repo, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "the post-checkout hook failed (exit 3): lefthook: post-checkout failed" in proc.stderr
    assert git(repo, "branch", "--list", "mux/*") == "" and mux_ls(repo) == {}
    assert not (repo.parent / "proj.worktrees" / "hooked").exists()
    hook.unlink()
    run_mux("restore", "hooked", cwd=repo)
    assert (Path(mux_ls(repo)["hooked"]["worktree"]) / "draft.txt").read_text() == "uncommitted\n"


def test_a_task_whose_base_is_gone_can_be_removed_and_clean_goes_on(repo: Path) -> None:
    commit_file(start(repo, "parent"), "p.txt", "parent\n")
    start(repo, "child", "--base", "mux/parent")  # nothing of its own: all of it is in main once parent is
    commit_file(start(repo, "orphan", "--base", "mux/parent"), "o.txt", "only on mux/orphan\n")
    start(repo, "plain")
    run_mux("merge", "parent", cwd=repo)  # mux/parent goes with its task
    out = run_mux("clean", cwd=repo).stdout
    assert "removed child" in out and "removed plain" in out
    assert "kept orphan: 1 commit on no other branch (its base mux/parent is gone)" in out, out
    refused = run_mux("rm", "orphan", cwd=repo, check=False)
    assert refused.returncode == 1 and "1 commit on no other branch" in refused.stderr
    assert "recovery ref: " in run_mux("rm", "--force", "orphan", cwd=repo).stdout
    assert mux_ls(repo) == {}
