"""`mux sync --all`, `sync_after_merge`, and `mux merge --resolve`: bringing tasks up to date, conflicts to an agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, mux_ls, run_mux, wait_until
from merge_helpers import checkout_state, commit_file, start

pytestmark = pytest.mark.usefixtures("fake_profile")


def idle(repo: Path, *names: str) -> None:
    wait_until(lambda: all(mux_ls(repo)[name]["state"] == "idle" for name in names), timeout=20)


def test_sync_all_syncs_the_clean_task_and_lists_the_conflicting_one_untouched(repo: Path) -> None:
    clean, clash = start(repo, "clean"), start(repo, "clash")
    idle(repo, "clean", "clash")
    commit_file(clean, "clean.txt", "mine\n")
    commit_file(clash, "README.md", "task version\n")
    commit_file(repo, "README.md", "main version\n")
    main_tip = git(repo, "rev-parse", "HEAD").strip()
    clash_before = checkout_state(clash)
    dry = json.loads(run_mux("sync", "--all", "--dry-run", "--json", cwd=repo).stdout)
    assert dry == {
        "dry_run": True,
        "synced": ["clean"],
        "conflicting": [{"name": "clash", "paths": ["README.md"]}],
        "skipped": [],
    }
    assert main_tip not in git(clean, "log", "--format=%H")  # a dry run changes nothing
    out = run_mux("sync", "--all", cwd=repo).stdout.splitlines()
    assert out[0] == "synced clean"
    assert out[1].startswith("not synced clash: conflicts in README.md")
    assert main_tip in git(clean, "log", "--format=%H")
    assert (clean / "README.md").read_text() == "main version\n"
    assert checkout_state(clash)[:3] == clash_before[:3]  # files, index and HEAD as they were
    assert git(clash, "status", "--porcelain") == ""  # never left mid-merge
    assert run_mux("sync", "--all", "--dry-run", cwd=repo).stdout.startswith("not synced clash")


def test_sync_all_refuses_a_name_and_dry_run_alone(repo: Path) -> None:
    start(repo, "t")
    for args in (("sync", "t", "--all"), ("sync", "--dry-run"), ("sync",)):
        proc = run_mux(*args, cwd=repo, check=False)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, args


def test_sync_after_merge_syncs_the_idle_task_and_skips_the_working_one(repo: Path) -> None:
    (repo / ".mux.toml").write_text("sync_after_merge = true\n")
    git(repo, "add", ".mux.toml")
    git(repo, "commit", "-q", "-m", "config")
    done, calm, busy = start(repo, "done"), start(repo, "calm"), start(repo, "busy")
    idle(repo, "done", "calm", "busy")
    commit_file(done, "done.txt", "finished\n")
    run_mux("send", "busy", "busy 60", cwd=repo)
    wait_until(lambda: mux_ls(repo)["busy"]["state"] == "working", timeout=20)
    busy_head = git(busy, "rev-parse", "HEAD")
    out = run_mux("merge", "done", cwd=repo).stdout
    assert "synced calm" in out.splitlines()
    assert "not synced busy: its agent is working" in out.splitlines()
    assert (calm / "done.txt").read_text() == "finished\n"
    assert git(busy, "rev-parse", "HEAD") == busy_head and not (busy / "done.txt").exists()


def test_a_bad_sync_after_merge_refuses_the_merge_in_one_line(repo: Path) -> None:
    worktree = start(repo, "t")
    (repo / ".mux.toml").write_text('sync_after_merge = "yes"\n')
    commit_file(worktree, "t.txt", "t\n")
    before = git(repo, "rev-parse", "HEAD")
    proc = run_mux("merge", "t", cwd=repo, check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert "sync_after_merge: must be true or false" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == before

