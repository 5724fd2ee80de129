"""`mux merge`: merge, squash and rebase home, and every refusal leaves everything byte-identical."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import libtmux
import pytest
from conftest import git, make_repo, mux_ls, run_mux, run_mux_on_terminal
from merge_helpers import checkout_state, commit_file, refs, start

pytestmark = pytest.mark.usefixtures("fake_profile")


def log(repo: Path, *args: str) -> list[str]:
    return git(repo, "log", "--format=%s", *args).splitlines()


def test_merge_commits_uncommitted_work_merges_and_removes_the_task(repo: Path, server: libtmux.Server) -> None:
    worktree = start(repo, "feat", "-p", "add the feature")
    commit_file(worktree, "feature.py", "print('feature')\n", "agent commit")
    (worktree / "README.md").write_text("hello\nedited by the agent\n")  # uncommitted
    (worktree / "notes.txt").write_text("untracked\n")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho hook ran >&2\nexit 1\n")  # mux's own commits run no hook
    hook.chmod(0o755)
    window = mux_ls(repo)["feat"]["window"]

    out = run_mux("merge", "feat", cwd=repo).stdout

    assert "merged feat into main (merge commit" in out
    restore = next(line for line in out.splitlines() if line.startswith("restore with: "))
    assert restore.startswith("restore with: mux restore feat --at ")
    assert log(repo, "-1") == ["Merge branch 'mux/feat' into main"]
    assert git(repo, "rev-list", "--count", "--merges", "HEAD").strip() == "1"
    assert set(log(repo, "HEAD^2", "-2")) == {"add the feature", "agent commit"}  # work commit: the prompt
    # The main checkout was fast-forwarded cleanly: files in place, nothing staged or modified.
    assert (repo / "notes.txt").read_text() == "untracked\n"
    assert (repo / "README.md").read_text() == "hello\nedited by the agent\n"
    assert git(repo, "status", "--porcelain") == ""
    assert "feat" not in mux_ls(repo) and not worktree.exists()
    assert "mux/feat" not in git(repo, "branch", "--list")
    assert window not in [found.window_id for found in server.windows]
    assert "refs/mux/recovery/feat/" in refs(repo)


def test_merge_shows_each_step_on_a_terminal_and_nothing_in_a_pipe(repo: Path) -> None:
    worktree = start(repo, "shown")
    commit_file(worktree, "a.txt", "a\n")
    (worktree / "b.txt").write_text("uncommitted\n")
    code, out = run_mux_on_terminal("merge", "shown", cwd=repo)
    assert code == 0, out
    steps = [line.split(" ", 1)[1] for line in out.split("\r\x1b[K") if line[:1] in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" and line[1:2] == " "]
    assert list(dict.fromkeys(steps)) == [
        "checking that shown merges cleanly into main",
        "committing the uncommitted work of shown",
        "merging shown into main",
        "updating main in the main checkout",
        "saving a recovery ref of shown and removing its worktree",
    ]
    assert "merged shown into main" in out.rsplit("\r\x1b[K", 1)[1]  # the line was cleared before the result

    worktree = start(repo, "piped")
    commit_file(worktree, "c.txt", "c\n")
    proc = run_mux("merge", "piped", cwd=repo)
    assert "merged piped into main" in proc.stdout and proc.stderr == ""


def test_squash_makes_one_commit_with_the_given_message(repo: Path) -> None:
    worktree = start(repo, "sq")
    commit_file(worktree, "a.txt", "a\n")
    commit_file(worktree, "b.txt", "b\n")
    (worktree / "c.txt").write_text("c\n")
    before = git(repo, "rev-parse", "HEAD").strip()
    run_mux("merge", "sq", "--squash", "-m", "Add a, b and c", cwd=repo)
    assert log(repo, f"{before}..HEAD") == ["Add a, b and c"]
    assert git(repo, "rev-parse", "HEAD^").strip() == before
    assert sorted(git(repo, "ls-files").split()) == [".gitignore", "README.md", "a.txt", "b.txt", "c.txt"]


def test_rebase_is_linear_on_top_of_the_moved_base(repo: Path) -> None:
    worktree = start(repo, "lin")
    commit_file(worktree, "one.txt", "1\n", "one")
    commit_file(worktree, "two.txt", "2\n", "two")
    commit_file(repo, "main.txt", "m\n", "main moved")
    run_mux("merge", "lin", "--rebase", cwd=repo)
    assert log(repo, "-4") == ["two", "one", "main moved", "initial"]
    assert git(repo, "rev-list", "--count", "--merges", "HEAD").strip() == "0"
    assert git(repo, "status", "--porcelain") == ""


def test_keep_and_into_a_branch_checked_out_nowhere(repo: Path) -> None:
    git(repo, "branch", "release")
    worktree = start(repo, "rel")
    commit_file(worktree, "r.txt", "r\n")
    main_before = checkout_state(repo)[:3]
    run_mux("merge", "rel", "--keep", "--into", "release", cwd=repo)
    assert "r.txt" in git(repo, "ls-tree", "--name-only", "release")
    assert checkout_state(repo)[:3] == main_before  # main checkout and main untouched
    assert "rel" in mux_ls(repo) and worktree.exists()


def test_conflict_changes_nothing_anywhere_and_names_the_paths(repo: Path) -> None:
    worktree = start(repo, "clash")
    commit_file(worktree, "README.md", "task version\n")
    (worktree / "other.txt").write_text("uncommitted\n")
    commit_file(repo, "README.md", "main version\n")
    main_before, task_before = checkout_state(repo), checkout_state(worktree)
    proc = run_mux("merge", "clash", cwd=repo, check=False)
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == ["README.md"]
    assert "mux sync clash" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert checkout_state(repo) == main_before
    assert checkout_state(worktree) == task_before
    assert "clash" in mux_ls(repo)


def overlapping_edit(repo: Path, wt: Path) -> None:
    (repo / "shared.txt").write_text("user's unsaved edit\n")


def staged_change(repo: Path, wt: Path) -> None:
    (repo / "shared.txt").write_text("user's staged edit\n")
    git(repo, "add", "shared.txt")


def untracked_same_path(repo: Path, wt: Path) -> None:
    (repo / "new.txt").write_text("the user's own new file\n")


def rebase_in_progress(repo: Path, wt: Path) -> None:
    git(repo, "checkout", "-q", "-b", "side")
    commit_file(repo, "unrelated.txt", "side\n")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "unrelated.txt", "main\n")
    git(repo, "checkout", "-q", "side")
    subprocess.run(["git", "rebase", "main"], cwd=repo, capture_output=True)  # stops on the conflict
    assert (repo / ".git" / "rebase-merge").exists()


def cherry_pick_in_progress(repo: Path, wt: Path) -> None:
    git(repo, "checkout", "-q", "-b", "side")
    commit_file(repo, "unrelated.txt", "side\n")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "unrelated.txt", "main\n")
    subprocess.run(["git", "cherry-pick", "side"], cwd=repo, capture_output=True)  # stops on the conflict
    assert (repo / ".git" / "CHERRY_PICK_HEAD").exists()


@pytest.mark.parametrize(
    ("make_local_state", "phrase"),
    [
        (overlapping_edit, "shared.txt"),
        (staged_change, "shared.txt"),
        (untracked_same_path, "new.txt"),
        (rebase_in_progress, "middle of a rebase"),
        (cherry_pick_in_progress, "middle of a cherry-pick"),
    ],
    ids=["overlapping-edit", "staged", "untracked-also-added", "rebase-in-progress", "cherry-pick-in-progress"],
)
def test_refusals_leave_the_main_checkout_and_stash_byte_identical(
    repo: Path, make_local_state: Callable[[Path, Path], None], phrase: str
) -> None:
    commit_file(repo, "shared.txt", "base\n")
    worktree = start(repo, "t")
    commit_file(worktree, "shared.txt", "task's version\n")
    (worktree / "new.txt").write_text("the task's new file\n")
    # The user's own stash entries must come through every operation untouched.
    (repo / "README.md").write_text("stashed edit\n")
    git(repo, "stash", "push", "-q", "-m", "user's stash")
    make_local_state(repo, worktree)
    before, task_before = checkout_state(repo), checkout_state(worktree)
    for strategy in ("--merge", "--squash", "--rebase"):
        proc = run_mux("merge", "t", strategy, cwd=repo, check=False)
        assert proc.returncode == 1, proc.stderr
        assert phrase in proc.stderr and len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
        assert checkout_state(repo) == before
        assert checkout_state(worktree) == task_before


def test_local_edits_where_the_merge_writes_nothing_are_kept(repo: Path) -> None:
    commit_file(repo, "mine.txt", "base\n")
    worktree = start(repo, "t")
    commit_file(worktree, "theirs.txt", "task\n")
    (repo / "mine.txt").write_text("user's unsaved edit\n")
    (repo / "scratch.txt").write_text("user's untracked file\n")
    git(repo, "stash", "push", "-q", "-m", "user's stash", "--", "mine.txt")
    (repo / "mine.txt").write_text("user's unsaved edit\n")
    stash = git(repo, "stash", "list", "--format=%H")
    run_mux("merge", "t", cwd=repo)
    assert (repo / "theirs.txt").read_text() == "task\n"
    assert (repo / "mine.txt").read_text() == "user's unsaved edit\n"
    assert (repo / "scratch.txt").read_text() == "user's untracked file\n"
    assert git(repo, "stash", "list", "--format=%H") == stash


def test_base_checked_out_in_another_worktree_is_refused(repo: Path, tmp_path: Path) -> None:
    git(repo, "branch", "other")
    git(repo, "worktree", "add", "-q", str(tmp_path / "elsewhere"), "other")
    worktree = start(repo, "t")
    commit_file(worktree, "x.txt", "x\n")
    before = refs(repo)
    proc = run_mux("merge", "t", "--into", "other", cwd=repo, check=False)
    assert proc.returncode == 1 and "checked out in" in proc.stderr
    assert refs(repo) == before


def test_agent_left_detached_head_or_another_branch(repo: Path) -> None:
    worktree = start(repo, "wander")
    commit_file(worktree, "on-branch.txt", "1\n")
    git(worktree, "checkout", "-q", "--detach")
    commit_file(worktree, "detached.txt", "2\n", "detached work")
    detached = git(worktree, "rev-parse", "HEAD").strip()
    before = refs(repo)
    proc = run_mux("merge", "wander", cwd=repo, check=False)
    assert proc.returncode == 1 and "detached HEAD" in proc.stderr
    assert refs(repo) == before
    git(worktree, "checkout", "-q", "-b", "agent-branch")
    proc = run_mux("merge", "wander", cwd=repo, check=False)
    assert proc.returncode == 1 and "on branch 'agent-branch'" in proc.stderr
    # Removing it anyway keeps the detached commits in the recovery ref.
    git(worktree, "checkout", "-q", "--detach")
    git(repo, "branch", "-D", "agent-branch")
    out = run_mux("rm", "--force", "wander", cwd=repo).stdout
    ref = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("recovery ref: "))
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "merge-base", "--is-ancestor", detached, ref) == ""


def test_branch_deleted_by_hand_refuses_merge_and_rm_saves_the_files(repo: Path) -> None:
    worktree = start(repo, "nobranch")
    (worktree / "draft.txt").write_text("only copy\n")
    git(repo, "update-ref", "-d", "refs/heads/mux/nobranch")
    proc = run_mux("merge", "nobranch", cwd=repo, check=False)
    assert proc.returncode == 1 and "no longer exists" in proc.stderr
    refused = run_mux("rm", "nobranch", cwd=repo, check=False)
    assert refused.returncode == 1 and "untracked" in refused.stderr
    out = run_mux("rm", "--force", "nobranch", cwd=repo).stdout
    ref = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("recovery ref: "))
    assert git(repo, "show", f"{ref}:draft.txt") == "only copy\n"


def test_worktree_deleted_by_hand_merges_the_branch(repo: Path) -> None:
    worktree = start(repo, "gone")
    commit_file(worktree, "kept.txt", "committed before the worktree went\n")
    subprocess.run(["rm", "-rf", str(worktree)], check=True)
    run_mux("merge", "gone", cwd=repo)
    assert (repo / "kept.txt").read_text() == "committed before the worktree went\n"
    assert "gone" not in mux_ls(repo)


def test_two_merges_into_one_base_at_once(repo: Path) -> None:
    one, two = start(repo, "one"), start(repo, "two")
    commit_file(one, "one.txt", "1\n")
    commit_file(two, "two.txt", "2\n")
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def go(name: str) -> None:
        results[name] = run_mux("merge", name, cwd=repo, check=False)

    threads = [threading.Thread(target=go, args=(n,)) for n in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[n].returncode for n in ("one", "two")] == [0, 0], {n: r.stderr for n, r in results.items()}
    assert (repo / "one.txt").exists() and (repo / "two.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert mux_ls(repo) == {}


def test_repo_path_with_spaces_quotes_and_hash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "my 'odd' \"repo\" #1")
    worktree = start(repo, "odd")
    commit_file(worktree, "x.txt", "x\n")
    (worktree / "y.txt").write_text("y\n")
    out = run_mux("merge", "odd", "--squash", cwd=repo).stdout
    assert (repo / "x.txt").exists() and (repo / "y.txt").exists()
    restore = next(line for line in out.splitlines() if line.startswith("restore with: "))
    run_mux(*restore.removeprefix("restore with: mux ").split(), cwd=repo)
    assert mux_ls(repo)["odd"]["worktree"] == str(worktree)


def test_worktree_with_an_initialised_submodule(repo: Path, tmp_path: Path) -> None:
    lib = make_repo(tmp_path / "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "add lib")
    worktree = start(repo, "sub")
    git(worktree, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
    assert (worktree / "lib" / "README.md").exists()
    commit_file(worktree, "uses-lib.txt", "x\n")
    (worktree / "lib" / "local.txt").write_text("edit inside the submodule\n")
    before = checkout_state(repo)
    for command in ("rm", "merge"):
        refused = run_mux(command, "sub", cwd=repo, check=False)
        assert refused.returncode == 1 and "lib" in refused.stderr
    assert checkout_state(repo) == before and (worktree / "lib" / "local.txt").exists()
    commit_file(worktree / "lib", "committed-in-lib.txt", "a commit only the worktree's submodule has\n")
    (worktree / "lib" / "local.txt").write_text("edit inside the submodule\n")
    # --keep merges what the superproject holds; the submodule's own state stays with the task.
    run_mux("merge", "sub", "--keep", cwd=repo)
    assert (repo / "uses-lib.txt").exists()
    # Removing the task keeps the submodule's commit and files too, beside the task's recovery ref.
    out = run_mux("rm", "--force", "sub", cwd=repo).stdout
    assert not worktree.exists()
    git(repo, "gc", "-q", "--prune=now")
    saved = git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/submodules/sub/").split()
    assert len(saved) == 1 and saved[0].endswith("/lib")
    assert git(repo, "show", f"{saved[0]}:local.txt") == "edit inside the submodule\n"
    assert git(repo, "show", f"{saved[0]}^:committed-in-lib.txt") == "a commit only the worktree's submodule has\n"
    restore = next(line for line in out.splitlines() if "restore with" in line).split()[3:]
    # git refuses to clone a file:// submodule by default: the restore goes on and says how to finish by hand.
    restored = run_mux(*restore, cwd=repo)
    assert "submodule lib: not restored" in restored.stdout and saved[0] in restored.stdout
    assert (worktree / "uses-lib.txt").exists()
    run_mux("rm", "--force", "sub", cwd=repo)
    # Allowed, the submodule comes back as it was: the commit only it had, checked out, and its edit uncommitted.
    git(repo, "config", "--global", "protocol.file.allow", "always")
    restored = run_mux(*restore, cwd=repo)
    assert f"submodule lib: restored from {saved[0]}" in restored.stdout
    assert (worktree / "lib" / "committed-in-lib.txt").exists()
    assert (worktree / "lib" / "local.txt").read_text() == "edit inside the submodule\n"
    assert git(worktree / "lib", "status", "--porcelain") == "?? local.txt\n"


def test_nothing_to_merge_makes_no_empty_commit(repo: Path) -> None:
    start(repo, "idle")
    head = git(repo, "rev-parse", "HEAD")
    out = run_mux("merge", "idle", cwd=repo).stdout
    assert "nothing of idle to merge" in out
    assert git(repo, "rev-parse", "HEAD") == head
    assert "idle" not in mux_ls(repo)


def test_staged_changes_on_paths_the_merge_leaves_alone_stay_staged(repo: Path) -> None:
    worktree = start(repo, "t")
    commit_file(worktree, "task.txt", "task\n")
    (repo / "README.md").write_text("staged by the user\n")
    git(repo, "add", "README.md")
    run_mux("merge", "t", "--squash", cwd=repo)
    assert git(repo, "status", "--porcelain") == "M  README.md\n"
    assert (repo / "task.txt").read_text() == "task\n"


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (("merge", "nosuch"), 1, "no task named 'nosuch'"),
        (("merge", "t", "--squash", "--rebase"), 2, "only one of"),
        (("merge", "t", "--into", "v1"), 1, "'v1' is not a local branch"),
        (("merge", "t", "--into", "nosuch"), 1, "'nosuch' is not a local branch"),
        (("merge", "t", "--into", "mux/t"), 1, "checked out in"),
        (("sync", "nosuch"), 1, "no task named 'nosuch'"),
        (("gc", "--older-than", "-1"), 2, "--older-than"),
        (("gc", "--older-than", "soon"), 2, "--older-than"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(repo: Path, args: tuple[str, ...], code: int, phrase: str) -> None:
    git(repo, "tag", "v1")
    worktree = start(repo, "t")
    commit_file(worktree, "x.txt", "x\n")
    before, task_before = checkout_state(repo), checkout_state(worktree)
    proc = run_mux(*args, cwd=repo, check=False)
    assert proc.returncode == code and phrase in proc.stderr and "Traceback" not in proc.stderr
    assert checkout_state(repo) == before and checkout_state(worktree) == task_before


def test_rebase_moves_no_other_branch_whatever_the_users_config(repo: Path) -> None:
    git(repo, "config", "rebase.updateRefs", "true")
    git(repo, "config", "rebase.autoStash", "true")
    worktree = start(repo, "lin")
    first = commit_file(worktree, "one.txt", "1\n", "one")
    git(repo, "branch", "users-branch", first)  # points into the commits the rebase replays
    commit_file(worktree, "two.txt", "2\n", "two")
    commit_file(repo, "main.txt", "m\n", "main moved")
    run_mux("merge", "lin", "--rebase", cwd=repo)
    assert git(repo, "rev-parse", "users-branch").strip() == first
    assert git(repo, "log", "--format=%s", "-3").split("\n")[:3] == ["two", "one", "main moved"]
