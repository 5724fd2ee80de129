"""Sub-tasks: `mux new` from inside a task makes a child of it, `ls` shows the family, `merge` brings a child
home into its parent's worktree, and `rm`, `merge` and `restore` keep families whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_repo, mux_ls, run_mux, wait_until
from merge_helpers import commit_file, start

pytestmark = pytest.mark.usefixtures("fake_profile")


def registry(repo: Path) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = json.loads((repo / ".git" / "mux" / "tasks.json").read_text())["tasks"]
    return tasks


def child_of(parent: Path, name: str, *args: str) -> Path:
    """`mux new NAME -a fake ARGS` run inside the parent's worktree, checked out; returns the child's worktree."""
    run_mux("new", name, "-a", "fake", *args, cwd=parent)
    row = wait_until(lambda: (r := mux_ls(parent)[name])["reason"] != "checking out" and r)
    return Path(row["worktree"])


def test_new_inside_a_task_starts_from_its_branch_and_says_what_the_child_will_not_see(repo: Path) -> None:
    parent = start(repo, "parent")
    commit_file(parent, "done.txt", "committed by the parent\n")
    (parent / "wip.txt").write_text("not committed yet\n")

    proc = run_mux("new", "child", "-a", "fake", cwd=parent)

    assert proc.stderr.splitlines() == [
        "mux: 'parent' has uncommitted changes that 'child' will not see: it starts from mux/parent's last commit"
    ]
    rows = mux_ls(repo)
    assert rows["child"]["parent"] == "parent" and rows["child"]["base"] == "mux/parent"
    assert rows["parent"]["children"] == ["child"] and rows["parent"]["parent"] is None
    assert rows["child"]["children"] == []
    child = Path(wait_until(lambda: (r := mux_ls(repo)["child"])["reason"] != "checking out" and r)["worktree"])
    assert (child / "done.txt").read_text() == "committed by the parent\n"
    assert not (child / "wip.txt").exists()
    assert registry(repo)["child"]["notify"] == ["idle", "exited", "waiting"]
    assert registry(repo)["parent"]["notify"] == []


def test_the_parent_comes_from_mux_task_and_a_stale_one_is_no_parent(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(repo, "parent")
    monkeypatch.setenv("MUX_TASK", "parent")  # what the parent's pane has, wherever its agent cd'd to
    proc = run_mux("new", "asked", "-a", "fake", "--notify", "exited,idle", cwd=repo)
    assert proc.stderr == ""  # the parent's worktree is clean: no warning
    monkeypatch.setenv("MUX_TASK", "gone-long-ago")  # a shell that outlived its task
    run_mux("new", "stale", "-a", "fake", cwd=repo)
    monkeypatch.setenv("MUX_TASK", "parent")
    monkeypatch.setenv("MUX_REPO", str(make_repo(repo.parent / "elsewhere")))  # a pane of another repository
    run_mux("new", "foreign", "-a", "fake", cwd=repo)

    rows, records = mux_ls(repo), registry(repo)
    assert (rows["asked"]["parent"], rows["asked"]["base"]) == ("parent", "mux/parent")
    assert records["asked"]["notify"] == ["idle", "exited"]
    for top in ("stale", "foreign"):
        assert (rows[top]["parent"], rows[top]["base"], records[top]["notify"]) == (None, "main", [])
    assert rows["parent"]["children"] == ["asked"]


def test_no_parent_and_base_choose_for_themselves(repo: Path) -> None:
    git(repo, "branch", "other")
    parent = start(repo, "parent")
    commit_file(parent, "p.txt", "p\n")
    run_mux("new", "top", "-a", "fake", "--no-parent", cwd=parent)
    run_mux("new", "top-other", "-a", "fake", "--no-parent", "--base", "other", cwd=parent)
    run_mux("new", "kid-other", "-a", "fake", "--base", "other", "--notify", "none", cwd=parent)

    rows, records = mux_ls(repo), registry(repo)
    assert (rows["top"]["parent"], rows["top"]["base"]) == (None, "main")
    assert (rows["top-other"]["parent"], rows["top-other"]["base"]) == (None, "other")
    assert (rows["kid-other"]["parent"], rows["kid-other"]["base"]) == ("parent", "other")
    assert records["kid-other"]["notify"] == []


NOTIFY_TAKES = "mux: --notify takes idle,exited,waiting (any of them, comma-separated) or none,"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--parent", "nosuch"), "mux: --parent 'nosuch' is not a task (see `mux ls`)"),
        (("--parent", "parent", "--no-parent"), "mux: give either --parent or --no-parent, not both"),
        (("--notify", "idle,done"), f"{NOTIFY_TAKES} not 'idle,done'"),
        (("--notify", ""), f"{NOTIFY_TAKES} not ''"),
        (("--no-parent", "--notify", "idle"), "mux: --notify tells a parent task's agent, and this task has no parent"
         " (see --parent)"),
    ],
)
def test_bad_family_input_is_one_line_and_creates_nothing(repo: Path, args: tuple[str, ...], says: str) -> None:
    start(repo, "parent")
    before = git(repo, "for-each-ref"), sorted(registry(repo))
    proc = run_mux("new", "child", "-a", "fake", *args, cwd=repo, check=False)
    assert proc.returncode in (1, 2) and proc.stderr.splitlines() == [says] and proc.stdout == ""
    assert (git(repo, "for-each-ref"), sorted(registry(repo))) == before


def test_ls_shows_each_child_under_its_parent(repo: Path) -> None:
    parent = start(repo, "a-parent")
    run_mux("new", "b-top", "-a", "fake", cwd=repo)
    child = child_of(parent, "c-child")
    run_mux("new", "d-grandchild", "-a", "fake", cwd=child)
    run_mux("new", "e-child", "-a", "fake", cwd=parent)
    run_mux("new", "f-top", "-a", "fake", cwd=repo)

    lines = run_mux("ls", cwd=repo).stdout.splitlines()
    assert [line.split("  fake", 1)[0].rstrip() for line in lines[1:]] == [
        "a-parent",
        "  c-child",
        "    d-grandchild",
        "  e-child",
        "b-top",
        "f-top",
    ]
    rows = json.loads(run_mux("ls", "--json", cwd=repo).stdout)
    assert [row["name"] for row in rows] == ["a-parent", "b-top", "c-child", "d-grandchild", "e-child", "f-top"]
    family = {row["name"]: (row["parent"], row["children"]) for row in rows}
    assert family == {
        "a-parent": (None, ["c-child", "e-child"]),
        "b-top": (None, []),
        "c-child": ("a-parent", ["d-grandchild"]),
        "d-grandchild": ("c-child", []),
        "e-child": ("a-parent", []),
        "f-top": (None, []),
    }
    assert run_mux("_tasks", cwd=repo).stdout.split() == sorted(family)  # TAB lists names, not the tree
