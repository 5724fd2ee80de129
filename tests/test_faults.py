"""Fault injection: kill mux (`os._exit`) at every step of `new`, `rm` and `merge`, then run `mux ls` and
`mux doctor` as a user would. The base is untouched or fully merged, no file or commit is lost, the store and the
worktrees, branches and windows agree, and the next mux says what it finished or rolled back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import libtmux
import pytest
from conftest import git, mux_ls, run_mux, window_tasks
from merge_helpers import blob_id, commit_file, reachable_blobs, start

pytestmark = pytest.mark.usefixtures("fake_profile")

WORK = {
    "committed": "committed by the agent\n",
    "uncommitted": "hello\nuncommitted edit\n",
    "untracked": "an untracked file\n",
}


def crash(repo: Path, *args: str, at: str) -> None:
    env = {**os.environ, "MUX_CRASH_AT": at}
    proc = subprocess.run(
        [sys.executable, "-m", "muxagent", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 99, f"mux {' '.join(args)} did not crash at {at}: {proc.returncode} {proc.stderr}"


def make_work(worktree: Path) -> None:
    commit_file(worktree, "committed.txt", WORK["committed"])
    (worktree / "README.md").write_text(WORK["uncommitted"])
    (worktree / "untracked.txt").write_text(WORK["untracked"])


def files_on_disk(*roots: Path) -> set[str]:
    found = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in filenames:
                found.add(blob_id(Path(dirpath, name).read_text(errors="replace")))
    return found


def assert_consistent(repo: Path, socket: str) -> dict[str, dict[str, object]]:
    """After a crash: the next `mux ls` repairs, `mux doctor` finds nothing wrong, everything agrees."""
    rows = mux_ls(repo)
    doctor = run_mux("doctor", cwd=repo)
    assert "warn" not in doctor.stdout and "FAIL" not in doctor.stdout, doctor.stdout
    assert not list((repo / ".git" / "mux" / "intents").glob("*.json"))
    linked = [line.split()[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
              if line.startswith("worktree ")][1:]  # fmt: skip
    assert sorted(linked) == sorted(str(row["worktree"]) for row in rows.values())
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/mux/").split()
    assert sorted(branches) == sorted(f"mux/{name}" for name in rows)
    assert sorted(window_tasks(libtmux.Server(socket_name=socket))) == sorted(rows)
    assert not (repo / ".git" / "mux" / "scratch").exists() or not any((repo / ".git" / "mux" / "scratch").iterdir())
    return rows


def assert_nothing_lost(repo: Path, texts: list[str]) -> None:
    kept = reachable_blobs(repo) | files_on_disk(repo, repo.parent / "proj.worktrees")
    lost = [text for text in texts if blob_id(text) not in kept]
    assert not lost, f"lost: {lost}"


NEW_STEPS = ["new:after-worktree", "new:after-window"]


@pytest.mark.parametrize("step", NEW_STEPS)
def test_crash_in_new_is_rolled_back(repo: Path, tmux_socket: str, step: str) -> None:
    crash(repo, "new", "half", "-a", "fake", at=step)
    proc = run_mux("ls", "--json", cwd=repo)
    assert "rolled back an interrupted `mux new half`" in proc.stderr
    rows = assert_consistent(repo, tmux_socket)
    assert rows == {}
    assert "refs/mux/recovery/" not in git(repo, "for-each-ref")  # nothing was in it: nothing to keep
    start(repo, "half")  # the name is free again


RM_STEPS = ["rm:after-recovery-ref", "rm:after-window", "rm:after-worktree", "rm:after-branch", "rm:after-record"]


@pytest.mark.parametrize("step", RM_STEPS)
def test_crash_in_rm_force_is_finished_and_keeps_the_work(repo: Path, tmux_socket: str, step: str) -> None:
    make_work(start(repo, "doomed"))
    keep = start(repo, "bystander")
    (keep / "mine.txt").write_text("bystander's file\n")
    crash(repo, "rm", "--force", "doomed", at=step)
    rows = assert_consistent(repo, tmux_socket)
    assert set(rows) == {"bystander"}
    assert_nothing_lost(repo, [*WORK.values(), "bystander's file\n"])
    restore = run_mux("restore", "doomed", cwd=repo)
    assert "with its uncommitted files" in restore.stdout
    worktree = Path(mux_ls(repo)["doomed"]["worktree"])
    assert (worktree / "README.md").read_text() == WORK["uncommitted"]
    assert (worktree / "untracked.txt").read_text() == WORK["untracked"]
    assert (worktree / "committed.txt").read_text() == WORK["committed"]


MERGE_STEPS = [
    "merge:before-commit",
    "merge:after-commit",
    "merge:after-merge-commit",
    "merge:after-update",
    "rm:after-recovery-ref",
    "rm:after-worktree",
    "merge:after-remove",
    "merge:after-record",
]


# Every step with a merge commit; the steps where the strategy matters with the other two as well.
MERGE_CASES = [
    *[(step, "--merge") for step in MERGE_STEPS],
    *[
        (step, strategy)
        for step in ("merge:after-merge-commit", "merge:after-update")
        for strategy in ("--rebase", "--squash")
    ],
]


@pytest.mark.parametrize(("step", "strategy"), MERGE_CASES)
def test_crash_in_merge_leaves_the_base_untouched_or_fully_merged(
    repo: Path, tmux_socket: str, step: str, strategy: str
) -> None:
    worktree = start(repo, "home")
    make_work(worktree)
    commit_file(repo, "moved.txt", "main moved on\n")  # so that --rebase really replays
    old = git(repo, "rev-parse", "main").strip()
    crash(repo, "merge", "home", strategy, at=step)
    proc = run_mux("ls", "--json", cwd=repo)
    rows = assert_consistent(repo, tmux_socket)
    new = git(repo, "rev-parse", "main").strip()
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout is never left mid-merge
    if new == old:
        assert "home" in rows
        assert "had not changed main" in proc.stderr or step == "merge:before-commit"
        assert_nothing_lost(repo, list(WORK.values()))
        run_mux("merge", "home", strategy, cwd=repo)  # and it can simply be run again
    else:
        assert "home" not in rows
        if step not in ("merge:after-remove", "merge:after-record"):
            assert "interrupted `mux merge home`" in proc.stderr or "interrupted `mux rm" in proc.stderr
    for name, text in (("committed.txt", WORK["committed"]), ("README.md", WORK["uncommitted"]),
                       ("untracked.txt", WORK["untracked"])):  # fmt: skip
        assert (repo / name).read_text() == text
    assert git(repo, "merge-base", "--is-ancestor", old, "main") == ""
    assert "refs/mux/recovery/home/" in git(repo, "for-each-ref")


def test_a_running_command_is_never_recovered_by_another_mux(repo: Path) -> None:
    from muxagent.state import intents

    start(repo, "busy")
    root = repo / ".git" / "mux"
    with intents.intent(root, intents.RmRecord(op="rm", name="busy", command="rm")) as running:
        proc = run_mux("ls", "--json", cwd=repo)  # another mux while this "rm" is under way
        assert running.path.exists() and "interrupted" not in proc.stderr
        assert "busy" in mux_ls(repo)
    assert not running.path.exists()


def test_doctor_names_an_interrupted_command_it_could_not_finish(repo: Path, tmux_socket: str) -> None:
    crash(repo, "new", "stuck", "-a", "fake", at="new:after-worktree")
    dot_git = repo.parent / "proj.worktrees" / "stuck" / ".git"
    link = dot_git.read_text()
    dot_git.write_text("gitdir: /nonexistent\n")  # rolling back must save the worktree first, and cannot read it
    doctor = run_mux("doctor", cwd=repo)
    line = next(line for line in doctor.stdout.splitlines() if "interrupted commands" in line)
    assert line.startswith("warn") and "`mux new` of 'stuck' was interrupted" in line, doctor.stdout
    assert "/nonexistent" in line or "not a git repository" in line, line
    assert (repo.parent / "proj.worktrees" / "stuck").is_dir()  # nothing was dropped while it could not be saved
    dot_git.write_text(link)
    proc = run_mux("ls", cwd=repo)
    assert "rolled back an interrupted `mux new stuck`" in proc.stderr
    assert_consistent(repo, tmux_socket)
