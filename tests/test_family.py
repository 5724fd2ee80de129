"""Sub-tasks: `mux new` from inside a task makes a child of it, `ls` shows the family, `merge` brings a child
home into its parent's worktree, and `rm`, `merge` and `restore` keep families whole."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_repo, mux_ls, run_mux, wait_until
from merge_helpers import checkout_state, commit_file, refs, start

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
        (
            ("--no-parent", "--notify", "idle"),
            "mux: --notify tells a parent task's agent, and this task has no parent (see --parent)",
        ),
    ],
)
def test_bad_family_input_is_one_line_and_creates_nothing(repo: Path, args: tuple[str, ...], says: str) -> None:
    start(repo, "parent")
    before = refs(repo), sorted(registry(repo))
    proc = run_mux("new", "child", "-a", "fake", *args, cwd=repo, check=False)
    assert proc.returncode in (1, 2) and proc.stderr.splitlines() == [says] and proc.stdout == ""
    assert (refs(repo), sorted(registry(repo))) == before


def test_ls_shows_each_child_under_its_parent(repo: Path) -> None:
    parent = start(repo, "a-parent")
    run_mux("new", "b-top", "-a", "fake", cwd=repo)
    child = child_of(parent, "c-child")
    run_mux("new", "d-grandchild", "-a", "fake", cwd=child)
    run_mux("new", "e-child", "-a", "fake", cwd=parent)
    run_mux("new", "f-top", "-a", "fake", cwd=repo)

    lines = run_mux("ls", cwd=repo).stdout.splitlines()
    # The NAME cell, without the mark of unread inbox entries (` ✉2`: the children are idle at once).
    assert [line.split("  fake", 1)[0].split(" ✉", 1)[0].rstrip() for line in lines[1:]] == [
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


def family(repo: Path) -> tuple[Path, Path]:
    """A parent task with a committed file and a child of it started from its worktree: (parent, child)."""
    parent = start(repo, "parent")
    commit_file(parent, "shared.txt", "base\n")
    # Told only when it exits, which it does not: a notice makes the parent's agent `working` a moment, and a merge
    # from outside its pane is refused then.
    return parent, child_of(parent, "child", "--notify", "exited")


def subjects(cwd: Path, *args: str) -> list[str]:
    return git(cwd, "log", "--format=%s", *args).splitlines()


@pytest.mark.parametrize("strategy", ["--merge", "--squash", "--rebase"])
def test_merge_brings_a_child_home_into_its_parents_worktree(repo: Path, strategy: str) -> None:
    parent, child = family(repo)
    started = git(child, "rev-parse", "HEAD").strip()
    commit_file(child, "feature.txt", "from the child\n", "child commit")
    (child / "notes.txt").write_text("uncommitted in the child\n")
    commit_file(parent, "later.txt", "the parent moved on\n", "parent commit")  # since the child started
    (parent / "wip.txt").write_text("the parent's own unsaved edit\n")  # where the merge writes nothing
    main_before = checkout_state(repo)[:4]  # files, index, HEAD, branch (not every ref: mux/parent moves)

    out = run_mux("merge", "child", strategy, "-m", "Child's work", cwd=repo).stdout

    assert "merged child into mux/parent (" in out and "removed child" in out
    shown = {path: (parent / path).read_text() for path in ("feature.txt", "notes.txt", "later.txt", "wip.txt")}
    assert shown == {
        "feature.txt": "from the child\n",
        "notes.txt": "uncommitted in the child\n",
        "later.txt": "the parent moved on\n",
        "wip.txt": "the parent's own unsaved edit\n",
    }
    assert git(parent, "status", "--porcelain") == "?? wip.txt\n"  # files, index and branch agree
    assert git(parent, "rev-parse", "HEAD") == git(repo, "rev-parse", "mux/parent")
    expected = {  # newest first, since the commit the child started from
        "--merge": ["Child's work", "Child's work", "child commit", "parent commit"],  # -m names the merge too
        "--squash": ["Child's work", "parent commit"],
        "--rebase": ["Child's work", "child commit", "parent commit"],
    }[strategy]
    assert subjects(parent, f"{started}..HEAD", "--topo-order") == expected
    assert "child" not in mux_ls(repo) and not child.exists()
    assert checkout_state(repo)[:4] == main_before  # the main checkout is not the target: untouched


def own_state(worktree: Path) -> tuple[str, ...]:
    """checkout_state without the refs of other branches: files, index, HEAD and its branch, stash, status."""
    state = checkout_state(worktree)
    return (*state[:4], git(worktree, "rev-parse", "HEAD"), *state[5:])


def overlapping_edit(parent: Path) -> None:
    (parent / "shared.txt").write_text("the parent's unsaved edit\n")


def overlapping_untracked(parent: Path) -> None:
    (parent / "feature.txt").write_text("the parent's own new file\n")


def staged_edit(parent: Path) -> None:
    overlapping_edit(parent)
    git(parent, "add", "shared.txt")


def hidden_edit(parent: Path) -> None:
    git(parent, "update-index", "--assume-unchanged", "shared.txt")  # `git status` shows nothing
    overlapping_edit(parent)


def checking_out(parent: Path) -> None:
    """The state of a worktree whose window has not checked its files out yet (muxagent.git.worktrees)."""
    (Path(git(parent, "rev-parse", "--absolute-git-dir").strip()) / "mux-checkout-pending").touch()


def mid_merge(parent: Path) -> None:
    git(parent, "checkout", "-q", "-b", "side")
    commit_file(parent, "other.txt", "side\n")
    git(parent, "checkout", "-q", "mux/parent")
    commit_file(parent, "other.txt", "parent\n")
    subprocess.run(["git", "merge", "side"], cwd=parent, capture_output=True)  # stops on the conflict
    assert git(parent, "rev-parse", "-q", "--verify", "MERGE_HEAD")


def mid_rebase(parent: Path) -> None:
    git(parent, "branch", "side", "HEAD")
    git(parent, "checkout", "-q", "side")
    commit_file(parent, "other.txt", "side\n")
    git(parent, "checkout", "-q", "mux/parent")
    commit_file(parent, "other.txt", "parent\n")
    subprocess.run(["git", "rebase", "side"], cwd=parent, capture_output=True)  # mux/parent itself, stopped
    assert git(parent, "status").startswith("interactive rebase in progress") or "rebase" in git(parent, "status")


WRITES = "the worktree of 'parent' has local changes where the merge into mux/parent writes:"


@pytest.mark.parametrize(
    ("make_state", "phrase"),
    [
        (overlapping_edit, f"{WRITES} shared.txt"),
        (overlapping_untracked, f"{WRITES} feature.txt"),
        (staged_edit, f"{WRITES} shared.txt"),
        (hidden_edit, f"{WRITES} shared.txt"),
        (checking_out, "has no files yet: its task's window checks them out before the agent starts"),
        (mid_merge, "the worktree of 'parent' is in the middle of a merge: finish or abort it first"),
        (mid_rebase, "branch 'mux/parent' is being rebased in"),
    ],
    ids=[
        "overlapping-edit",
        "overlapping-untracked",
        "staged",
        "assume-unchanged",
        "checking-out",
        "mid-merge",
        "mid-rebase",
    ],
)
def test_refused_merges_into_a_parent_change_nothing_anywhere(
    repo: Path, make_state: Callable[[Path], None], phrase: str
) -> None:
    parent, child = family(repo)
    commit_file(child, "shared.txt", "the child's version\n")
    (child / "feature.txt").write_text("the child's new file\n")
    make_state(parent)
    before = [checkout_state(path) for path in (repo, parent, child)]
    for strategy in ("--merge", "--squash", "--rebase"):
        proc = run_mux("merge", "child", strategy, cwd=repo, check=False)
        assert proc.returncode == 1 and phrase in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""
        assert [checkout_state(path) for path in (repo, parent, child)] == before
    assert "child" in mux_ls(repo)


def test_a_parent_that_switched_branches_keeps_its_worktree_and_its_branch_moves_as_today(repo: Path) -> None:
    parent, child = family(repo)
    commit_file(child, "feature.txt", "from the child\n")
    git(parent, "checkout", "-q", "-b", "elsewhere")  # the parent's agent left mux/parent: checked out nowhere
    before = own_state(parent)
    run_mux("merge", "child", cwd=repo)
    assert own_state(parent) == before and not (parent / "feature.txt").exists()
    assert git(repo, "show", "mux/parent:feature.txt") == "from the child\n"


def test_a_conflict_with_the_parent_is_exit_3_and_changes_nothing(repo: Path) -> None:
    parent, child = family(repo)
    commit_file(child, "shared.txt", "the child's version\n")
    commit_file(parent, "shared.txt", "the parent's version\n")
    before = [checkout_state(path) for path in (repo, parent, child)]
    proc = run_mux("merge", "child", cwd=repo, check=False)
    assert proc.returncode == 3 and proc.stdout == "shared.txt\n"
    assert "'child' conflicts with mux/parent in 1 file: nothing was changed" in proc.stderr
    assert [checkout_state(path) for path in (repo, parent, child)] == before


def test_the_parent_moving_during_the_merge_refuses_it_and_takes_the_childs_commit_back(repo: Path) -> None:
    parent, child = family(repo)
    commit_file(child, "feature.txt", "from the child\n")
    (child / "notes.txt").write_text("uncommitted in the child\n")
    # Fired the first time mux writes the child's index (after it read mux/parent's tip): the parent's agent
    # commits right then, in the parent's worktree.
    marker = repo / ".git" / "move-the-parent-once"
    hook = repo / ".git" / "hooks" / "post-index-change"
    hook.write_text(
        "#!/bin/sh\n"
        f'[ "$(pwd -P)" = "{child.resolve()}" ] && rm "{marker}" 2>/dev/null || exit 0\n'
        f'cd "{parent}" && unset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE && echo moved > moved.txt &&'
        " git add moved.txt && git -c core.hooksPath=/dev/null commit -q -m 'the parent moved'\n"
    )
    hook.chmod(0o755)
    child_before = own_state(child)
    marker.touch()

    proc = run_mux("merge", "child", cwd=repo, check=False)

    assert not marker.exists(), "the hook did not run"
    assert proc.returncode == 1 and proc.stderr == (
        "mux: branch 'mux/parent' moved in the worktree of 'parent' while mux was merging into it: nothing was"
        " changed, try again\n"
    )
    assert subjects(parent, "-1") == ["the parent moved"] and git(parent, "status", "--porcelain") == ""
    assert own_state(child) == child_before  # its work uncommitted again, as it was
    run_mux("merge", "child", cwd=repo)  # again, now that the parent holds still
    assert (parent / "notes.txt").exists() and (parent / "moved.txt").exists()


def test_a_working_parent_takes_a_merge_only_from_its_own_pane_or_with_while_busy(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(repo, "parent", "-p", "busy 120")
    wait_until(lambda: mux_ls(repo)["parent"]["state"] == "working", timeout=20)
    for name in ("asked", "forced", "refused"):
        worktree = child_of(repo, name, "--parent", "parent")
        commit_file(worktree, f"{name}.txt", f"{name}\n")
    parent = Path(mux_ls(repo)["parent"]["worktree"])
    before = checkout_state(parent), refs(repo)

    proc = run_mux("merge", "refused", cwd=repo, check=False)

    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "mux: 'parent' is working, and merging 'refused' changes the files under its agent: run it from 'parent''s"
        " own pane, after `mux wait parent`, or with --while-busy"
    ]
    assert (checkout_state(parent), refs(repo)) == before
    run_mux("merge", "forced", "--while-busy", cwd=repo)
    monkeypatch.setenv("MUX_TASK", "parent")  # the parent's agent asks for it
    run_mux("merge", "asked", cwd=parent)
    assert (
        (parent / "forced.txt").exists() and (parent / "asked.txt").exists() and not (parent / "refused.txt").exists()
    )
    assert mux_ls(repo)["parent"]["state"] == "working"


def three_generations(repo: Path) -> tuple[Path, Path, Path]:
    """parent -> child -> grandchild, each started from the worktree above it, told only when one exits."""
    # With the default notices, the grandchild's first idle is typed into the child's agent, which is `working` a
    # moment: a merge from outside its pane is refused and `clean` skips it then (both flaked in CI).
    parent = start(repo, "parent")
    child = child_of(parent, "child", "--notify", "exited")
    return parent, child, child_of(child, "grandchild", "--notify", "exited")


def recovery_refs(repo: Path) -> list[str]:
    return sorted(
        ref.split("/")[3] for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/recovery").split()
    )


def test_rm_refuses_a_parent_with_sub_tasks_and_recursive_removes_them_first(repo: Path) -> None:
    parent, child, grandchild = three_generations(repo)
    refs_before = refs(repo)
    proc = run_mux("rm", "child", "--force", cwd=repo, check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "mux: task 'child' has sub-tasks: grandchild (merge or remove them first, or `mux rm --recursive child`"
        " removes them too)"
    ]
    assert refs(repo) == refs_before and set(mux_ls(repo)) == {"parent", "child", "grandchild"}

    out = run_mux("rm", "parent", "--recursive", cwd=repo).stdout

    assert [line for line in out.splitlines() if line.startswith("removed ")] == [
        "removed grandchild",
        "removed child",
        "removed parent",
    ]
    assert mux_ls(repo) == {} and not any(path.exists() for path in (parent, child, grandchild))
    assert recovery_refs(repo) == ["child", "grandchild", "parent"]  # each undoable by `mux restore`


def test_rm_recursive_refuses_the_whole_family_when_one_member_has_unsaved_work(repo: Path) -> None:
    parent, child, grandchild = three_generations(repo)
    (grandchild / "draft.txt").write_text("only copy\n")
    commit_file(child, "c.txt", "the child's commit\n")
    before = [checkout_state(path) for path in (repo, parent, child, grandchild)]

    proc = run_mux("rm", "parent", "--recursive", cwd=repo, check=False)

    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert (
        "grandchild: 1 untracked file (draft.txt)" in proc.stderr and "child: 1 commit not in mux/parent" in proc.stderr
    )
    assert "nothing was removed" in proc.stderr
    assert [checkout_state(path) for path in (repo, parent, child, grandchild)] == before
    assert set(mux_ls(repo)) == {"parent", "child", "grandchild"}

    run_mux("rm", "parent", "--recursive", "--force", cwd=repo)
    assert mux_ls(repo) == {}
    run_mux("restore", "grandchild", cwd=repo)  # the recovery refs hold every member's work
    assert (Path(mux_ls(repo)["grandchild"]["worktree"]) / "draft.txt").read_text() == "only copy\n"


def test_merge_refuses_a_parent_whose_sub_tasks_are_not_merged_into_it(repo: Path) -> None:
    parent, child, grandchild = three_generations(repo)
    commit_file(parent, "p.txt", "the parent's work\n")
    (grandchild / "g.txt").write_text("the grandchild's work\n")
    before = [checkout_state(path) for path in (repo, parent, child, grandchild)]

    proc = run_mux("merge", "parent", cwd=repo, check=False)

    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "mux: 'parent' has sub-tasks whose work is not merged into it: grandchild (merge them first with"
        " `mux merge NAME`, or remove them); nothing was changed"
    ]
    assert [checkout_state(path) for path in (repo, parent, child, grandchild)] == before
    run_mux("merge", "grandchild", cwd=repo)  # into child's worktree
    run_mux("merge", "child", cwd=repo)  # into parent's
    run_mux("merge", "parent", cwd=repo)  # home
    assert (repo / "g.txt").read_text() == "the grandchild's work\n" and (repo / "p.txt").exists()
    assert mux_ls(repo) == {}


def test_restore_brings_the_parent_link_back_and_an_orphan_merges_as_today(repo: Path) -> None:
    parent, child = family(repo)
    commit_file(child, "feature.txt", "from the child\n")
    run_mux("rm", "parent", "--recursive", "--force", cwd=repo)

    run_mux("restore", "child", cwd=repo)  # its parent is gone: the link waits for it
    rows = mux_ls(repo)
    assert (rows["child"]["parent"], rows["child"]["base"]) == (None, "mux/parent")
    assert registry(repo)["child"]["parent"] == "parent"
    assert registry(repo)["child"]["notify"] == ["exited"]
    proc = run_mux("merge", "child", cwd=repo, check=False)  # its base branch went with the parent
    assert proc.returncode == 1
    assert proc.stderr == "mux: 'mux/parent' is not a local branch: merge into a branch with --into BRANCH\n"

    run_mux("restore", "parent", cwd=repo)
    rows = mux_ls(repo)
    assert rows["child"]["parent"] == "parent" and rows["parent"]["children"] == ["child"]
    parent = Path(rows["parent"]["worktree"])
    wait_until(lambda: (parent / "shared.txt").exists())
    run_mux("merge", "child", cwd=repo)
    assert (parent / "feature.txt").read_text() == "from the child\n"


def test_clean_removes_a_merged_family_children_first(repo: Path) -> None:
    three_generations(repo)
    wait_until(lambda: {row["state"] for row in mux_ls(repo).values()} == {"idle"})  # `clean` leaves busy agents
    out = run_mux("clean", cwd=repo).stdout
    assert [line for line in out.splitlines() if line.startswith("removed ")] == [
        "removed grandchild",
        "removed child",
        "removed parent",
    ]
    assert mux_ls(repo) == {}


@pytest.mark.parametrize("step", ["merge:after-commit", "merge:after-merge-commit", "merge:after-update"])
def test_a_crash_while_merging_into_a_parent_leaves_it_untouched_or_fully_merged(
    repo: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    parent, child = family(repo)
    commit_file(child, "feature.txt", "from the child\n")
    (child / "notes.txt").write_text("uncommitted in the child\n")
    old = git(repo, "rev-parse", "mux/parent").strip()
    with monkeypatch.context() as crashing:
        crashing.setenv("MUX_CRASH_AT", step)
        assert run_mux("merge", "child", cwd=repo, check=False).returncode == 99

    rows = mux_ls(repo)  # the next mux finishes or rolls back what the crash cut short

    assert git(parent, "status", "--porcelain") == ""  # never left mid-merge, files and branch agree
    assert git(parent, "rev-parse", "HEAD") == git(repo, "rev-parse", "mux/parent")
    if git(repo, "rev-parse", "mux/parent").strip() == old:
        assert "child" in rows
        run_mux("merge", "child", cwd=repo)  # and it can simply be run again
    else:
        assert "child" not in rows
    assert (parent / "feature.txt").exists() and (parent / "notes.txt").exists()
