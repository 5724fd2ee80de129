"""Best of N: `mux new NAME -n N` / several `-a` start a group of tasks on one base and prompt, all or none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import git, mux_ls, profile_with, run_mux, wait_until, window_task
from merge_helpers import checkout_state, commit_file, refs, tree_digest

pytestmark = pytest.mark.usefixtures("fake_profile")


def second_agent(fake_profile: Path) -> str:
    """A second profile, `other`, of the same fake agent: a mixed `-a` list of agents that are installed."""
    profile_with(fake_profile, fake_profile.with_name("other.toml"))
    return "other"


def window_names(server: libtmux.Server) -> dict[str, str]:
    return {task: str(window.window_name) for window in server.windows if (task := window_task(window))}


def settled(repo: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """`mux ls --json` once every one of `names` has its files checked out."""
    return wait_until(lambda: all((rows := mux_ls(repo))[n]["reason"] != "checking out" for n in names) and rows)


def test_n_members_share_the_base_the_prompt_and_a_group(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    out = run_mux("new", "fix", "-n", "3", "-a", "fake", "-p", "commit sol.txt mine", cwd=repo).stdout
    names = ["fix-1", "fix-2", "fix-3"]
    assert [line.split(":")[0] for line in out.splitlines()] == names
    rows = settled(repo, names)
    assert sorted(rows) == names
    for name in names:
        assert rows[name]["group"] == "fix" and rows[name]["prompt"] == "commit sol.txt mine"
        worktree = Path(str(rows[name]["worktree"]))
        wait_until(lambda: git(worktree, "log", "-1", "--format=%s") == "fake agent: sol.txt\n")  # noqa: B023
        assert git(worktree, "rev-parse", "HEAD~1").strip() == base
    assert [line.split()[0] for line in run_mux("ls", cwd=repo).stdout.splitlines()[1:]] == names


def test_several_agents_name_their_members_and_combine_with_n(repo: Path, fake_profile: Path) -> None:
    other = second_agent(fake_profile)
    run_mux("new", "a", "-a", "fake", "-a", other, "-p", "hello", cwd=repo)
    run_mux("new", "b", "-a", "fake", "-a", other, "-n", "2", cwd=repo)
    rows = mux_ls(repo)
    assert {name: (row["agent"], row["group"]) for name, row in rows.items()} == {
        "a-fake": ("fake", "a"), "a-other": ("other", "a"),
        "b-fake-1": ("fake", "b"), "b-fake-2": ("fake", "b"), "b-other-1": ("other", "b"), "b-other-2": ("other", "b"),
    }  # fmt: skip
    assert rows["a-fake"]["prompt"] == rows["a-other"]["prompt"] == "hello"


def test_a_failure_on_the_third_member_leaves_no_member(repo: Path, fake_profile: Path) -> None:
    run_mux("new", "x-3", "-a", "fake", cwd=repo)  # the third member's name is taken
    before = refs(repo)
    worktrees = git(repo, "worktree", "list")
    failed = run_mux("new", "x", "-n", "3", "-a", "fake", "-p", "hi", cwd=repo, check=False)
    assert failed.returncode != 0 and "'x-3' already exists" in failed.stderr and "Traceback" not in failed.stderr
    assert sorted(mux_ls(repo)) == ["x-3"]
    assert refs(repo) == before and git(repo, "worktree", "list") == worktrees
    # An agent that is not installed, second in the list: nothing is made either.
    profile_with(fake_profile, fake_profile.with_name("gone.toml"), command=["/nonexistent/agent"])
    failed = run_mux("new", "y", "-a", "fake", "-a", "gone", cwd=repo, check=False)
    assert failed.returncode != 0 and "'gone' is not installed" in failed.stderr
    assert sorted(mux_ls(repo)) == ["x-3"] and refs(repo) == before


def test_max_running_starts_the_rest_as_earlier_members_go_idle(repo: Path, server: libtmux.Server) -> None:
    # Each member asks a question on start: it waits (running) until answered, then goes idle.
    run_mux("new", "q", "-n", "4", "-a", "fake", "--max-running", "2", "-p", "ask", cwd=repo)
    rows = mux_ls(repo)
    assert [rows[f"q-{i}"]["window"] is None for i in range(1, 5)] == [False, False, True, True]
    assert rows["q-3"]["state"] == "starting" and rows["q-3"]["reason"].startswith("queued")
    # The monitor marks a window in the tick it sees the state, and starts queued members in that tick too.
    wait_until(lambda: {window_names(server).get(f"q-{i}") for i in (1, 2)} == {"q-1 ?", "q-2 ?"}, timeout=20)
    assert [mux_ls(repo)[f"q-{i}"]["window"] is None for i in (3, 4)] == [True, True]
    run_mux("send", "q-1", "y", cwd=repo)
    wait_until(lambda: window_names(server).get("q-3") == "q-3 ?", timeout=20)
    assert mux_ls(repo)["q-4"]["window"] is None  # q-2 and q-3 wait: two running
    run_mux("send", "q-2", "y", cwd=repo)
    wait_until(lambda: window_names(server).get("q-4") == "q-4 ?", timeout=20)


def two_candidates(repo: Path) -> dict[str, Path]:
    """Group `c`: both members write common.txt alike, then c-1 writes one.txt and c-2 commits two.txt."""
    run_mux("new", "c", "-n", "2", "-a", "fake", "-p", "write common.txt same", cwd=repo)
    rows = settled(repo, ["c-1", "c-2"])
    worktrees = {name: Path(str(rows[name]["worktree"])) for name in ("c-1", "c-2")}
    run_mux("send", "c-1", "write one.txt first", cwd=repo)
    run_mux("send", "c-2", "commit two.txt second", cwd=repo)
    wait_until(lambda: (worktrees["c-1"] / "one.txt").exists() and (worktrees["c-1"] / "common.txt").exists())
    wait_until(lambda: git(worktrees["c-2"], "log", "-1", "--format=%s") == "fake agent: two.txt\n")
    return worktrees


def test_compare_shows_each_members_changes_and_how_alike_they_are(repo: Path) -> None:
    two_candidates(repo)
    shown = json.loads(run_mux("compare", "c", "--json", cwd=repo).stdout)
    members = {member["name"]: member for member in shown["members"]}
    assert members["c-1"]["files"] == ["common.txt", "one.txt"] and members["c-1"]["only_here"] == ["one.txt"]
    assert members["c-2"]["files"] == ["common.txt", "two.txt"] and members["c-2"]["only_here"] == ["two.txt"]
    assert (members["c-1"]["commits"], members["c-2"]["commits"]) == (0, 1)
    assert members["c-1"]["added_lines"] == 2 and members["c-1"]["state"] == "idle"
    assert shown["similarity"] == [{"a": "c-1", "b": "c-2", "paths": 0.333, "lines": 0.333}]
    text = run_mux("compare", "c", cwd=repo).stdout
    assert "c-1 ~ c-2: 0.33 / 0.33" in text and "one.txt" in text
    between = run_mux("compare", "c", "--diff", "1", "c-2", cwd=repo).stdout
    assert "+++ b/two.txt" in between and "--- a/one.txt" in between and "common.txt" not in between
    missing = run_mux("compare", "nogroup", cwd=repo, check=False)
    assert missing.returncode != 0 and "no group named 'nogroup'" in missing.stderr


def test_compare_check_runs_the_repos_check_in_each_member_once_trusted(repo: Path) -> None:
    worktrees = two_candidates(repo)
    (repo / ".mux.toml").write_text('check = "echo port=$MUX_PORT; test -f one.txt"\n')
    refused = run_mux("compare", "c", "--check", cwd=repo, check=False)
    assert refused.returncode != 0 and "not trusted" in refused.stderr and "Traceback" not in refused.stderr
    run_mux("trust", "--yes", cwd=repo)
    shown = json.loads(run_mux("compare", "c", "--check", "--json", cwd=repo).stdout)
    checks = {member["name"]: member["check"] for member in shown["members"]}
    ports = {name: mux_ls(repo)[name]["port"] for name in worktrees}
    assert checks["c-1"]["exit_status"] == 0 and checks["c-2"]["exit_status"] == 1
    assert {name: check["last_lines"] for name, check in checks.items()} == {
        name: [f"port={port}"] for name, port in ports.items()
    }
    assert ports["c-1"] != ports["c-2"]
    text = run_mux("compare", "c", "--check", cwd=repo).stdout
    assert "c-2: `echo port=$MUX_PORT; test -f one.txt` failed (exit 1" in text


def test_keep_with_a_conflicting_winner_changes_nothing_and_exits_3(repo: Path) -> None:
    worktrees = two_candidates(repo)
    commit_file(repo, "two.txt", "main's own\n", "main wrote two.txt")
    before = (checkout_state(repo), *(tree_digest(w) for w in worktrees.values()), sorted(mux_ls(repo)))
    refused = run_mux("keep", "c-2", cwd=repo, check=False)
    assert refused.returncode == 3 and "two.txt" in refused.stdout and "Traceback" not in refused.stderr
    assert (checkout_state(repo), *(tree_digest(w) for w in worktrees.values()), sorted(mux_ls(repo))) == before


def test_keep_merges_the_winner_and_the_losers_come_back_with_restore(repo: Path) -> None:
    worktrees = two_candidates(repo)
    out = run_mux("keep", "c-1", "--squash", "-m", "the winner", cwd=repo).stdout
    assert "merged c-1 into main" in out and "removed c-2 (restore with: mux restore c-2 --at " in out
    assert (repo / "one.txt").read_text() == "first\n" and not (repo / "two.txt").exists()
    assert mux_ls(repo) == {} and not worktrees["c-2"].exists()
    assert "refs/mux/recovery/c-2/" in refs(repo)
    run_mux("restore", "c-2", cwd=repo)
    back = settled(repo, ["c-2"])["c-2"]
    assert (Path(back["worktree"]) / "two.txt").read_text() == "second\n"
    assert git(Path(back["worktree"]), "log", "-1", "--format=%s") == "fake agent: two.txt\n"
    assert back["group"] == "c"  # a member of its group again


def test_a_restored_member_is_listed_with_its_group(repo: Path) -> None:
    run_mux("new", "g", "-n", "2", "-a", "fake", cwd=repo)
    run_mux("new", "lone", "-a", "fake", cwd=repo)
    settled(repo, ["g-1", "g-2", "lone"])
    run_mux("rm", "g-1", "--force", cwd=repo)
    run_mux("restore", "g-1", cwd=repo)
    assert mux_ls(repo)["g-1"]["group"] == "g"
    run_mux("new", "h", "-n", "10", "-a", "fake", "--max-running", "1", cwd=repo)
    shown = [line.split()[0] for line in run_mux("ls", cwd=repo).stdout.splitlines()[1:]]
    assert shown == ["g-1", "g-2", "lone", *(f"h-{i}" for i in range(1, 11))]  # h-2 before h-10
    refused = run_mux("keep", "lone", cwd=repo, check=False)
    assert refused.returncode != 0 and "no member of a group" in refused.stderr
