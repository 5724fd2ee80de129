"""`mux sync --all`, `sync_after_merge`, and `mux merge --resolve`: bringing tasks up to date, conflicts to an agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def conflicting_task(repo: Path, name: str) -> Path:
    """A task whose committed README.md conflicts with main's, idle, with uncommitted work: an edit and a new file."""
    worktree = start(repo, name)
    idle(repo, name)
    commit_file(worktree, "other.txt", "committed\n")
    (worktree / "other.txt").write_text("edited, not committed\n")
    commit_file(worktree, "README.md", "task version\n", "Say what the task does")
    commit_file(repo, "README.md", "main version\n", "Say what main does")
    (worktree / "notes.txt").write_text("the agent's uncommitted notes\n")
    return worktree


def resolve(repo: Path, name: str) -> str:
    """`mux merge NAME --resolve`, checked to leave the main checkout alone; returns what the agent was told."""
    main_before = checkout_state(repo)[:4]
    proc = run_mux("merge", name, "--resolve", cwd=repo)
    assert proc.stdout.splitlines()[0] == "README.md"
    assert checkout_state(repo)[:4] == main_before  # files, index, HEAD: the merge happens in the task's worktree
    assert mux_ls(repo)[name]["reason"] == "resolving"
    return wait_until(lambda: (screen := run_mux("peek", name, cwd=repo).stdout).count("got: ") > 5 and screen)


def test_merge_resolve_hands_the_conflict_to_the_agent_and_merge_completes_once_resolved(repo: Path) -> None:
    worktree = conflicting_task(repo, "c")
    told = resolve(repo, "c")
    for words in ("- README.md", "Say what the task does", "Say what main does", "git commit --no-edit"):
        assert words in told
    refused = run_mux("merge", "c", cwd=repo, check=False)  # not resolved yet: nothing changes
    assert refused.returncode == 3 and "still conflict" in refused.stderr
    run_mux("send", "c", "commit README.md resolved", cwd=repo)
    # The uncommitted work was committed before the merge, as `mux merge` commits it, and the merge is committed.
    wait_until(lambda: git(worktree, "status", "--porcelain") == "" and mux_ls(repo)["c"]["state"] == "idle")
    assert git(worktree, "log", "-1", "--format=%s", "HEAD^2") == "Say what main does\n"
    run_mux("merge", "c", cwd=repo)
    assert (repo / "README.md").read_text() == "resolved\n"
    assert (repo / "notes.txt").read_text() == "the agent's uncommitted notes\n"
    assert (repo / "other.txt").read_text() == "edited, not committed\n"


def task_state(worktree: Path) -> tuple[str, ...]:
    """checkout_state but the refs (the attempt adds one) and the index file's bytes (stat data): its entries."""
    state = checkout_state(worktree)
    return (state[0], *state[2:4], *state[5:], git(worktree, "ls-files", "--stage"))


def attempt_refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/recovery/c/").split()


def test_a_resolver_that_gives_up_leaves_the_task_as_before_and_keeps_the_attempt(repo: Path) -> None:
    worktree = conflicting_task(repo, "c")
    before = task_state(worktree)
    resolve(repo, "c")
    run_mux("send", "c", "commit README.md a wrong resolution", cwd=repo)  # committed, then given up on
    wait_until(lambda: git(worktree, "status", "--porcelain", "README.md") == "")
    run_mux("send", "c", "write extra.txt scratch", cwd=repo)
    wait_until(lambda: (worktree / "extra.txt").exists())
    out = run_mux("merge", "c", "--abort-resolve", cwd=repo).stdout
    assert "back as it was" in out
    assert task_state(worktree) == before
    attempt = attempt_refs(repo)[-1]
    assert attempt in out
    assert git(repo, "show", f"{attempt}:README.md") == "a wrong resolution\n"
    assert git(repo, "show", f"{attempt}:extra.txt") == "scratch\n"
    assert mux_ls(repo)["c"]["reason"] != "resolving"
    assert run_mux("merge", "c", cwd=repo, check=False).returncode == 3  # the plain conflict again, changing nothing
    assert task_state(worktree) == before


def test_a_resolver_killed_half_way_loses_nothing_and_the_task_goes_back(repo: Path) -> None:
    worktree = conflicting_task(repo, "c")
    before = task_state(worktree)
    resolve(repo, "c")
    run_mux("send", "c", "write README.md half of it", cwd=repo)
    wait_until(lambda: (worktree / "README.md").read_text() == "half of it\n")
    run_mux("send", "c", "exit 9", cwd=repo)
    wait_until(lambda: mux_ls(repo)["c"]["state"] == "exited")
    refused = run_mux("merge", "c", cwd=repo, check=False)
    assert refused.returncode == 3 and "--abort-resolve" in refused.stderr
    run_mux("merge", "c", "--abort-resolve", cwd=repo)
    assert task_state(worktree) == before
    assert git(repo, "show", f"{attempt_refs(repo)[-1]}:README.md") == "half of it\n"


def test_merge_resolve_refuses_while_the_agent_works_changing_nothing(repo: Path) -> None:
    worktree = conflicting_task(repo, "c")
    run_mux("send", "c", "busy 60", cwd=repo)
    wait_until(lambda: mux_ls(repo)["c"]["state"] == "working", timeout=20)
    before = task_state(worktree)
    proc = run_mux("merge", "c", "--resolve", cwd=repo, check=False)
    assert proc.returncode == 3 and "its agent, which is working" in proc.stderr
    assert task_state(worktree) == before and mux_ls(repo)["c"]["reason"] != "resolving"


def test_a_resolution_that_fails_the_repos_check_is_not_merged(repo: Path) -> None:
    """With a trusted `check` in .mux.toml, a resolved merge lands only once the check passes in the worktree."""
    (repo / ".mux.toml").write_text('check = "test -f checked.txt"\n')
    git(repo, "add", ".mux.toml")
    git(repo, "commit", "-q", "-m", "The repo's check")
    run_mux("trust", "--yes", cwd=repo)
    worktree = conflicting_task(repo, "c")
    resolve(repo, "c")
    run_mux("send", "c", "commit README.md resolved", cwd=repo)
    wait_until(
        lambda: "README.md" not in git(worktree, "status", "--porcelain") and mux_ls(repo)["c"]["state"] == "idle"
    )
    main_before = checkout_state(repo)
    refused = run_mux("merge", "c", cwd=repo, check=False)
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        "mux: 'c' resolved its merge but the check (test -f checked.txt) exited 1: let its agent fix it, or give up"
        " with `mux merge c --abort-resolve`; nothing was changed"
    ]
    assert checkout_state(repo) == main_before
    (worktree / "checked.txt").write_text("ok\n")
    run_mux("merge", "c", cwd=repo)
    assert (repo / "README.md").read_text() == "resolved\n"


def resolve_with_a_resolver(repo: Path, name: str) -> Path:
    """`mux merge NAME --resolve -a fake`: a resolver sub-task NAME-resolve told the conflict; its worktree."""
    proc = run_mux("merge", name, "--resolve", "-a", "fake", cwd=repo)
    assert proc.stdout.splitlines()[0] == "README.md" and f"{name}-resolve (fake)" in proc.stdout
    rows = mux_ls(repo)
    resolver = rows[f"{name}-resolve"]
    assert resolver["parent"] == name and rows[name]["children"] == [f"{name}-resolve"]
    assert rows[name]["reason"] == f"resolving (by {name}-resolve)"
    worktree = Path(resolver["worktree"])
    assert worktree != Path(rows[name]["worktree"])
    assert "<<<<<<<" in (worktree / "README.md").read_text()  # the merge was there before the agent started

    def told_and_idle() -> str | None:
        screen = run_mux("peek", f"{name}-resolve", cwd=repo).stdout
        return screen if "fake>" in screen else None

    told = wait_until(told_and_idle)
    for words in ("got: mux merged main", "- README.md", "Say what the task does", "Say what main does"):
        assert words in told  # its prompt, on its command line
    return worktree


def test_merge_resolve_with_an_agent_starts_a_resolver_sub_task_and_lands_its_resolution(repo: Path) -> None:
    """-a: the task's worktree is not touched and its agent may work meanwhile; its resolver works on a worktree of
    its own, the task's inbox (its parent's) records when it is idle, and `mux merge` lands the resolution, then
    the task."""
    worktree = conflicting_task(repo, "c")
    run_mux("send", "c", "busy 60", cwd=repo)
    wait_until(lambda: mux_ls(repo)["c"]["state"] == "working", timeout=20)
    before, main_before = task_state(worktree), checkout_state(repo)[:4]
    resolver = resolve_with_a_resolver(repo, "c")
    assert task_state(worktree) == before and checkout_state(repo)[:4] == main_before
    refused = run_mux("merge", "c", cwd=repo, check=False)  # not resolved yet: nothing changes
    assert refused.returncode == 3 and "its resolver 'c-resolve'" in refused.stderr
    run_mux("send", "c-resolve", "commit README.md resolved", cwd=repo)
    wait_until(lambda: git(resolver, "status", "--porcelain") == "" and mux_ls(repo)["c-resolve"]["state"] == "idle")
    inbox = wait_until(lambda: json.loads(run_mux("inbox", "c", "--json", cwd=repo).stdout))
    assert [(entry["child"], entry["state"]) for entry in inbox][-1] == ("c-resolve", "idle")
    refused = run_mux("merge", "c", cwd=repo, check=False)  # it would change the files under c's working agent
    assert refused.returncode == 1 and "--while-busy" in refused.stderr
    assert task_state(worktree) == before
    out = run_mux("merge", "c", "--while-busy", cwd=repo)
    assert "merged c-resolve's resolution into c" in out.stderr and "merged c into main" in out.stdout
    assert (repo / "README.md").read_text() == "resolved\n"
    assert (repo / "notes.txt").read_text() == "the agent's uncommitted notes\n"
    assert not {"c", "c-resolve"} & set(mux_ls(repo))
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/recovery/c-resolve/")


def test_a_resolvers_end_is_kept_in_the_inbox_and_never_typed_into_the_idle_task(repo: Path) -> None:
    """A notice typed into the task's idle agent started a turn there that held `mux merge NAME` back as working:
    the resolver's states go to the task's inbox only. Another sub-task's notice, typed later, leaves it out."""
    conflicting_task(repo, "c")
    resolver = resolve_with_a_resolver(repo, "c")
    run_mux("send", "c-resolve", "commit README.md resolved", cwd=repo)
    wait_until(lambda: git(resolver, "status", "--porcelain") == "" and mux_ls(repo)["c-resolve"]["state"] == "idle")
    wait_until(lambda: ("c-resolve", "idle") in [(e["child"], e["state"]) for e in inbox_of(repo, "c")])
    run_mux("new", "c-helper", "-a", "fake", "--parent", "c", cwd=repo)
    told = wait_until(lambda: [line for line in screen_of(repo, "c") if "got: [mux]" in line], timeout=20)
    assert "c-helper" in told[0] and "c-resolve" not in " ".join(told)
    run_mux("rm", "c-helper", cwd=repo)
    wait_until(lambda: mux_ls(repo)["c"]["state"] == "idle")
    assert "merged c into main" in run_mux("merge", "c", cwd=repo).stdout  # no --while-busy needed


def inbox_of(repo: Path, name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(run_mux("inbox", name, "--json", cwd=repo).stdout)
    return entries


def screen_of(repo: Path, name: str) -> list[str]:
    return run_mux("peek", name, cwd=repo).stdout.splitlines()


def test_aborting_a_resolver_removes_it_keeping_its_attempt_and_the_task_never_changed(repo: Path) -> None:
    worktree = conflicting_task(repo, "c")
    before = task_state(worktree)
    resolver = resolve_with_a_resolver(repo, "c")
    # Its agent idle, the task's uncommitted work was committed for the resolver to see, as merge would commit it.
    assert git(repo, "log", "-1", "--format=%s", "mux/c") == "mux: work of task c\n"
    assert (resolver / "notes.txt").read_text() == "the agent's uncommitted notes\n"
    run_mux("send", "c-resolve", "write README.md half of it", cwd=repo)
    wait_until(lambda: (resolver / "README.md").read_text() == "half of it\n")
    out = run_mux("merge", "c", "--abort-resolve", cwd=repo).stdout
    attempt = git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/recovery/c-resolve/").split()[-1]
    assert "back as it was" in out and attempt in out
    assert git(repo, "show", f"{attempt}:README.md") == "half of it\n"
    assert "c-resolve" not in mux_ls(repo) and mux_ls(repo)["c"]["reason"] != "resolving"
    assert task_state(worktree) == before
    assert run_mux("merge", "c", cwd=repo, check=False).returncode == 3  # the plain conflict again, changing nothing
    assert task_state(worktree) == before


def test_a_resolver_is_refused_for_a_conflict_only_in_uncommitted_edits_while_the_agent_works(repo: Path) -> None:
    worktree = start(repo, "u")
    (worktree / "README.md").write_text("the task's uncommitted version\n")
    commit_file(repo, "README.md", "main version\n")
    run_mux("send", "u", "busy 60", cwd=repo)
    wait_until(lambda: mux_ls(repo)["u"]["state"] == "working", timeout=20)
    before = task_state(worktree)
    proc = run_mux("merge", "u", "--resolve", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 3 and len(proc.stderr.splitlines()) == 1 and "it is working" in proc.stderr
    assert "u-resolve" not in mux_ls(repo) and task_state(worktree) == before


def test_a_conflicting_uncommitted_edit_is_committed_for_its_agent_and_abort_takes_the_commit_back(
    repo: Path,
) -> None:
    """git refuses to merge into a file with an uncommitted edit: --resolve commits the work first, as merge does."""
    worktree = start(repo, "u")
    idle(repo, "u")
    (worktree / "README.md").write_text("the task's uncommitted version\n")
    (worktree / "new.txt").write_text("untracked\n")
    commit_file(repo, "README.md", "main version\n")
    before = task_state(worktree)
    assert run_mux("merge", "u", "--resolve", cwd=repo).stdout.splitlines()[0] == "README.md"
    assert "<<<<<<<" in (worktree / "README.md").read_text()
    assert git(worktree, "log", "-1", "--format=%s") == "mux: work of task u\n"
    run_mux("merge", "u", "--abort-resolve", cwd=repo)
    assert task_state(worktree) == before
