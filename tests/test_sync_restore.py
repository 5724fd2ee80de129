"""`mux sync`, the conflict radar in `mux ls`, `mux restore` and `mux gc`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import git, mux_ls, run_mux, wait_until
from merge_helpers import checkout_state, commit_file, refs, start

pytestmark = pytest.mark.usefixtures("fake_profile")


def outside_refs(repo: Path) -> tuple[str, ...]:
    """checkout_state without the refs: sync writes a recovery ref first, and nothing else outside the task."""
    state = checkout_state(repo)
    return (*state[:4], *state[5:], git(repo, "rev-parse", "main"))


def test_sync_merges_or_rebases_new_base_commits_into_the_task(repo: Path) -> None:
    worktree = start(repo, "s")
    commit_file(worktree, "task.txt", "t\n", "task work")
    commit_file(repo, "base.txt", "b\n", "base moved")
    # Changed outside mux: `ls` may show the live view a moment more (issue 14: within 2 s).
    wait_until(lambda: mux_ls(repo)["s"]["behind"] == 1)
    assert "synced s with main" in run_mux("sync", "s", cwd=repo).stdout
    assert (worktree / "base.txt").exists() and mux_ls(repo)["s"]["behind"] == 0
    assert "up to date" in run_mux("sync", "s", cwd=repo).stdout
    commit_file(repo, "base2.txt", "b2\n", "base moved again")
    main_before = outside_refs(repo)
    run_mux("sync", "s", "--rebase", cwd=repo)
    assert git(worktree, "log", "--format=%s", "-1") == "task work\n"
    assert git(worktree, "merge-base", "--is-ancestor", "main", "HEAD") == ""
    assert outside_refs(repo) == main_before  # the user's checkout is never where syncing happens


def test_sync_conflict_stays_in_the_task_worktree_and_the_agent_is_asked(repo: Path) -> None:
    worktree = start(repo, "c")
    wait_until(lambda: mux_ls(repo)["c"]["state"] == "idle", timeout=20)
    commit_file(worktree, "README.md", "task version\n")
    commit_file(repo, "README.md", "main version\n")
    main_before = outside_refs(repo)
    proc = run_mux("sync", "c", "--ask", cwd=repo, check=False)
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == ["README.md"]
    assert "asked to resolve" in proc.stderr
    assert outside_refs(repo) == main_before
    assert "UU README.md" in git(worktree, "status", "--porcelain")
    row = mux_ls(repo)["c"]
    assert (row["state"], row["reason"]) == ("waiting", "conflict")
    wait_until(lambda: "README.md" in run_mux("peek", "c", cwd=repo).stdout, timeout=20)
    assert "- README.md" in run_mux("peek", "c", cwd=repo).stdout
    # The agent resolves it: the task leaves the conflict state, and merges cleanly.
    (worktree / "README.md").write_text("resolved\n")
    git(worktree, "add", "README.md")
    git(worktree, "commit", "-q", "--no-edit")
    # Resolved behind mux's back: the live view may show it up to 2 s later (issue 14's bound).
    wait_until(lambda: mux_ls(repo)["c"]["reason"] != "conflict", timeout=5)
    run_mux("merge", "c", cwd=repo)
    assert (repo / "README.md").read_text() == "resolved\n"


def test_sync_rebase_refuses_a_dirty_worktree(repo: Path) -> None:
    worktree = start(repo, "d")
    commit_file(repo, "base.txt", "b\n")
    (worktree / "wip.txt").write_text("wip\n")
    before = checkout_state(worktree)
    proc = run_mux("sync", "d", "--rebase", cwd=repo, check=False)
    assert proc.returncode == 1 and "uncommitted" in proc.stderr
    assert checkout_state(worktree)[:3] == before[:3]


def test_a_removed_tasks_sync_conflict_does_not_follow_a_new_task_of_its_name(repo: Path) -> None:
    worktree = start(repo, "twice")
    commit_file(worktree, "README.md", "task version\n")
    commit_file(repo, "README.md", "main version\n")
    assert run_mux("sync", "twice", cwd=repo, check=False).returncode == 3
    run_mux("rm", "--force", "twice", cwd=repo)
    worktree = start(repo, "twice")
    wait_until(lambda: mux_ls(repo)["twice"]["state"] == "idle", timeout=20)
    # The new task's agent runs a merge of its own that stops on a conflict: that is its business, not mux's.
    git(worktree, "checkout", "-q", "-b", "side", "HEAD~1")
    commit_file(worktree, "README.md", "side version\n")
    git(worktree, "checkout", "-q", "mux/twice")
    proc = subprocess.run(["git", "merge", "-q", "side"], cwd=worktree, capture_output=True, text=True)
    assert proc.returncode != 0 and "UU README.md" in git(worktree, "status", "--porcelain")
    assert mux_ls(repo)["twice"]["reason"] != "conflict"


def test_radar_shows_conflicts_with_the_base_and_between_tasks(repo: Path) -> None:
    commit_file(repo, "shared.txt", "line\n")
    one, two, calm = start(repo, "one"), start(repo, "two"), start(repo, "calm")
    (one / "shared.txt").write_text("one's edit\n")  # uncommitted: found through a scratch-index snapshot
    commit_file(two, "shared.txt", "two's edit\n")
    (calm / "elsewhere.txt").write_text("no overlap\n")
    git(repo, "stash", "list")
    index_before = (one / ".git").read_text()
    # Edited and committed behind mux's back: the live view may show them up to 2 s later (issue 14).
    rows = wait_until(lambda: (r := mux_ls(repo))["one"]["conflicts"] and r["two"]["conflicts"] and r)
    assert rows["one"]["conflicts"] == [{"with": "two", "paths": ["shared.txt"]}]
    assert rows["two"]["conflicts"] == [{"with": "one", "paths": ["shared.txt"]}]
    assert rows["calm"]["conflicts"] == []
    table = {line.split()[0]: line for line in run_mux("ls", cwd=repo).stdout.splitlines()[1:]}
    assert table["one"].endswith("; conflicts: two (1 file)") and "conflicts" not in table["calm"]
    assert git(one, "status", "--porcelain") == " M shared.txt\n"  # nothing staged in the agent's index
    assert (one / ".git").read_text() == index_before
    commit_file(repo, "shared.txt", "main's edit\n")
    main_conflict = {"with": "main", "paths": ["shared.txt"]}
    # Changed outside mux: `ls` may show the live view a moment more (issue 14: within 2 s).
    rows = wait_until(lambda: main_conflict in (r := mux_ls(repo))["one"]["conflicts"] and r)
    assert {"with": "main", "paths": ["shared.txt"]} in rows["two"]["conflicts"]
    assert git(repo, "stash", "list") == ""
    cache = json.loads((repo / ".git" / "mux" / "radar.json").read_text())
    assert cache["pairs"]
    # Cached by the tips involved: a second `ls` runs no merge-tree and is as fast.
    started = time.monotonic()
    mux_ls(repo)
    assert time.monotonic() - started < 5


def test_merge_says_which_tasks_are_now_behind(repo: Path) -> None:
    done, other = start(repo, "done"), start(repo, "other")
    commit_file(done, "d.txt", "d\n")
    commit_file(other, "o.txt", "o\n")
    out = run_mux("merge", "done", cwd=repo).stdout
    assert "behind main now: other" in out
    assert mux_ls(repo)["other"]["behind"] == 2  # the task's commit and the merge commit


def test_restore_brings_back_branch_worktree_files_and_window(repo: Path) -> None:
    worktree = start(repo, "back", "-p", "the first prompt")
    commit_file(worktree, "c.txt", "committed\n")
    (worktree / "README.md").write_text("uncommitted\n")
    (worktree / "u.txt").write_text("untracked\n")
    (worktree / ".gitignore").unlink()  # a deletion comes back as a deletion
    out = run_mux("rm", "--force", "back", cwd=repo).stdout
    assert not worktree.exists()
    git(repo, "gc", "-q", "--prune=now")
    hint = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("restore with: "))
    run_mux(*hint.split()[1:], cwd=repo)
    assert (worktree / "c.txt").read_text() == "committed\n"
    assert (worktree / "README.md").read_text() == "uncommitted\n"
    assert (worktree / "u.txt").read_text() == "untracked\n"
    assert not (worktree / ".gitignore").exists()
    assert git(worktree, "status", "--porcelain") == " D .gitignore\n M README.md\n?? u.txt\n"
    row = wait_until(lambda: mux_ls(repo).get("back"), timeout=20)
    assert row["branch"] == "mux/back" and row["prompt"] == "the first prompt" and row["window"]
    wait_until(lambda: mux_ls(repo)["back"]["state"] in ("idle", "working"), timeout=20)
    # A restored task is a task like any other: refused while it exists, restorable again after removal.
    proc = run_mux("restore", "back", cwd=repo, check=False)
    assert proc.returncode == 1 and "exists" in proc.stderr


def test_restore_picks_a_timestamp_and_refuses_bad_input(repo: Path) -> None:
    worktree = start(repo, "multi")
    (worktree / "v.txt").write_text("first\n")
    first = run_mux("rm", "--force", "multi", cwd=repo).stdout
    time.sleep(1.1)  # recovery refs are named by the second
    worktree = start(repo, "multi")
    (worktree / "v.txt").write_text("second\n")
    run_mux("rm", "--force", "multi", cwd=repo)
    stamp = next(line for line in first.splitlines() if line.startswith("restore with: ")).split()[-1]
    # A later removal in the same second is named STAMP-1: the printed stamp still means the first ref.
    newest = git(repo, "for-each-ref", "--sort=-refname", "--format=%(objectname)", "refs/mux/recovery/multi/")
    git(repo, "update-ref", f"refs/mux/recovery/multi/{stamp}-1", newest.split()[0])
    run_mux("restore", "multi", "--at", stamp, cwd=repo)
    assert (worktree / "v.txt").read_text() == "first\n"
    for args, phrase in [
        (("restore", "nosuch"), "no recovery ref"),
        (("restore", "multi", "--at", "19990101"), "no recovery ref of 'multi' at"),
        (("restore", "multi"), "task 'multi' exists"),
        (("restore", "../x"), "invalid task name"),
    ]:
        proc = run_mux(*args, cwd=repo, check=False)
        assert proc.returncode == 1 and phrase in proc.stderr and "Traceback" not in proc.stderr


def test_recovery_refs_survive_git_gc_and_only_mux_gc_drops_them(repo: Path) -> None:
    worktree = start(repo, "old")
    (worktree / "only-here.txt").write_text("precious\n")
    run_mux("rm", "--force", "old", cwd=repo)
    ref = next(line.split()[0] for line in refs(repo).splitlines() if line.startswith("refs/mux/recovery/old/"))
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "show", f"{ref}:only-here.txt") == "precious\n"
    assert "no recovery ref is older" in run_mux("gc", "--older-than", "1", cwd=repo).stdout
    assert "would drop" in run_mux("gc", "--older-than", "0", "--dry-run", cwd=repo).stdout
    assert ref in refs(repo)
    time.sleep(1.1)
    assert f"dropped {ref}" in run_mux("gc", "--older-than", "0", cwd=repo).stdout
    assert "refs/mux/recovery/" not in refs(repo)
    proc = run_mux("gc", cwd=repo, check=False)
    assert proc.returncode == 2  # --older-than is required: dropping recovery refs is never a default


def test_clean_prints_how_to_restore_each_removed_task(repo: Path) -> None:
    start(repo, "merged")
    out = run_mux("clean", cwd=repo).stdout
    assert "removed merged" in out and "restore with: mux restore merged --at " in out
    hint = next(line.split(": ", 1)[1] for line in out.splitlines() if "restore with: " in line)
    run_mux(*hint.split()[1:], cwd=repo)
    assert "merged" in mux_ls(repo)
