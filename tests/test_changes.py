"""Each task's changes and the conflict radar, read from real worktrees; what the cache may and may not reuse."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import git

from muxagent.git import repository, worktrees
from muxagent.git.repository import RepoPaths
from muxagent.model import Changes, Task
from muxagent.status import changes, radar


@pytest.fixture
def rp(repo: Path) -> RepoPaths:
    return repository.discover(repo)


@pytest.fixture
def root(rp: RepoPaths) -> Path:
    return rp.common_dir / "mux"


def commit_file(cwd: Path, name: str, text: str) -> None:
    (cwd / name).parent.mkdir(parents=True, exist_ok=True)
    (cwd / name).write_text(text)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", f"change {name}")


def start(rp: RepoPaths, tmp_path: Path, name: str, base: str = "main") -> Task:
    worktree = tmp_path / "worktrees" / name
    worktrees.add_worktree(rp, worktree, f"mux/{name}", base)
    return Task(name, "shell", (), base, f"mux/{name}", str(worktree), "s", "@1", "2026-01-01T00:00:00Z", 0)


def read(rp: RepoPaths, root: Path, *tasks: Task) -> dict[str, changes.Work]:
    return changes.read_many(rp, root, tasks, repository.ref_tips(rp))


def counts(rp: RepoPaths, root: Path, task: Task) -> Changes | None:
    work = read(rp, root, task).get(task.name)
    return work.changes if work is not None else None


def make_work(wt: Path) -> None:
    """One commit (+3), an edit (+2 -1), an untracked text file (+4), a binary (0), an ignored log."""
    commit_file(wt, "feature.py", "a\nb\nc\n")
    (wt / "README.md").write_text("hi\nthere\n")
    (wt / "notes" / "deep").mkdir(parents=True)
    (wt / "notes" / "deep" / "todo.txt").write_text("1\n2\n3\n4")
    (wt / "logo.bin").write_bytes(b"\x89PNG\0\0\1\2")
    (wt / "debug.log").write_text("ignored\n" * 50)


def test_counts_commits_edits_and_untracked_files(rp: RepoPaths, root: Path, repo: Path, tmp_path: Path) -> None:
    task = start(rp, tmp_path, "t")
    make_work(Path(task.worktree))
    assert counts(rp, root, task) == Changes(dirty_files=3, added_lines=9, removed_lines=1, ahead=1, behind=0)
    commit_file(repo, "upstream.txt", "x\n")
    commit_file(repo, "upstream2.txt", "y\n")
    # Base moved on: the task's own numbers stay put (merge-base), only `behind` grows.
    assert counts(rp, root, task) == Changes(dirty_files=3, added_lines=9, removed_lines=1, ahead=1, behind=2)
    git(Path(task.worktree), "add", "-A")
    git(Path(task.worktree), "commit", "-q", "-m", "wip")
    assert counts(rp, root, task) == Changes(dirty_files=0, added_lines=9, removed_lines=1, ahead=2, behind=2)


def test_a_rename_counts_only_its_edit(rp: RepoPaths, root: Path, repo: Path, tmp_path: Path) -> None:
    commit_file(repo, "old.txt", "1\n2\n3\n4\n5\n")
    task = start(rp, tmp_path, "r")
    wt = Path(task.worktree)
    git(wt, "mv", "old.txt", "new.txt")
    (wt / "new.txt").write_text("1\n2\n3\n4\nfive\n")
    assert counts(rp, root, task) == Changes(dirty_files=1, added_lines=1, removed_lines=1)
    assert read(rp, root, task)["r"].paths == {"old.txt", "new.txt"}


def test_reading_changes_leaves_the_worktree_and_its_index_alone(rp: RepoPaths, root: Path, tmp_path: Path) -> None:
    task = start(rp, tmp_path, "t")
    wt = Path(task.worktree)
    make_work(wt)
    git(wt, "status")  # settle the index's stat cache so any later rewrite would be visible
    index = Path(git(wt, "rev-parse", "--path-format=absolute", "--git-path", "index").strip())
    before = (
        git(wt, "--no-optional-locks", "status", "--porcelain=v2", "-uall"),
        index.read_bytes(),
        index.stat().st_mtime_ns,
    )
    read(rp, root, task)
    read(rp, root, task)
    assert (
        git(wt, "--no-optional-locks", "status", "--porcelain=v2", "-uall"),
        index.read_bytes(),
        index.stat().st_mtime_ns,
    ) == before


def test_many_tasks_in_parallel_and_a_missing_worktree(rp: RepoPaths, root: Path, tmp_path: Path) -> None:
    tasks = []
    for i in range(10):
        task = start(rp, tmp_path, f"w{i}")
        (Path(task.worktree) / "f.txt").write_text("x\n" * i)
        tasks.append(task)
    gone = start(rp, tmp_path, "gone")
    subprocess.run(["rm", "-rf", gone.worktree], check=True)
    found = read(rp, root, *tasks[:3], gone, *tasks[3:])
    assert "gone" not in found
    assert [found[t.name].changes.added_lines for t in tasks] == list(range(10))


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(rp: RepoPaths, root: Path, tmp_path: Path) -> None:
    task = start(rp, tmp_path, "t")
    note = Path(task.worktree) / "note.txt"
    note.write_text("1\n2\n")
    assert counts(rp, root, task) == Changes(dirty_files=1, added_lines=2)
    before = note.stat()
    note.write_text("123\n")  # same size
    os.utime(note, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime: only ctime tells
    assert counts(rp, root, task) == Changes(dirty_files=1, added_lines=1)


def test_a_damaged_cache_is_only_a_miss(rp: RepoPaths, root: Path, tmp_path: Path) -> None:
    task = start(rp, tmp_path, "t")
    (Path(task.worktree) / "a.txt").write_text("a\nb\n")
    expected = Changes(dirty_files=1, added_lines=2)
    assert counts(rp, root, task) == expected
    cache = root / changes.CACHE_FILE
    doc = json.loads(cache.read_text())
    doc["tasks"]["t"].update(added="many", paths=None)
    cache.write_text(json.dumps(doc))
    assert counts(rp, root, task) == expected
    cache.write_text("{not json")
    assert counts(rp, root, task) == expected
    cache.write_text(json.dumps({"version": 1, "tasks": ["not", "a", "table"]}))
    assert counts(rp, root, task) == expected


def counting_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` first on PATH that logs its arguments, one line per run, then runs the real git."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    bin_dir = tmp_path / "counting-bin"
    bin_dir.mkdir()
    log = tmp_path / "git.log"
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_a_steady_read_runs_one_git_status_per_worktree(
    rp: RepoPaths, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [start(rp, tmp_path, f"s{i}") for i in range(4)]
    for task in tasks:
        (Path(task.worktree) / f"{task.name}.txt").write_text("work\n")
    tips = repository.ref_tips(rp)
    log = counting_git(tmp_path, monkeypatch)
    first = changes.read_many(rp, root, tasks, tips)
    log.write_text("")
    assert changes.read_many(rp, root, tasks, tips) == first
    runs = log.read_text().splitlines()
    assert len(runs) == len(tasks) and all(" status " in run for run in runs), runs
    (Path(tasks[0].worktree) / "s0.txt").write_text("work\nmore\n")
    log.write_text("")
    assert changes.read_many(rp, root, tasks, tips)["s0"].changes.added_lines == 2
    assert len(log.read_text().splitlines()) == len(tasks) + 1  # plus one diff, for the edited worktree only


# --- the conflict radar ----------------------------------------------------------------------------------


def conflicts(rp: RepoPaths, root: Path, *tasks: Task) -> radar.Found:
    return radar.for_tasks(rp, root, tasks, read(rp, root, *tasks))


def test_radar_finds_a_file_against_a_directory(rp: RepoPaths, root: Path, tmp_path: Path) -> None:
    a, b, calm = start(rp, tmp_path, "a"), start(rp, tmp_path, "b"), start(rp, tmp_path, "calm")
    commit_file(Path(a.worktree), "docs", "a file\n")
    commit_file(Path(b.worktree), "docs/guide.md", "a directory\n")
    (Path(calm.worktree) / "docs.md").write_text("a neighbour, not a conflict\n")
    found = conflicts(rp, root, a, b, calm)
    assert [c["with"] for c in found["a"]] == ["b"] and [c["with"] for c in found["b"]] == ["a"]
    assert "calm" not in found


def test_radar_merges_nothing_while_tasks_touch_different_files(
    rp: RepoPaths, root: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [start(rp, tmp_path, f"p{i}") for i in range(4)]
    for task in tasks:
        (Path(task.worktree) / f"{task.name}.txt").write_text("own file\n")
    works = read(rp, root, *tasks)
    log = counting_git(tmp_path, monkeypatch)
    assert radar.for_tasks(rp, root, tasks, works) == {}
    assert not log.exists()
    # Once the base moves on, each task is checked against it (snapshot and merge, once; then cached).
    monkeypatch.undo()
    commit_file(repo, "p0.txt", "main's own\n")
    assert [c["with"] for c in conflicts(rp, root, *tasks)["p0"]] == ["main"]
    (tmp_path / "again").mkdir()
    log = counting_git(tmp_path / "again", monkeypatch)
    works = read(rp, root, *tasks)
    log.unlink(missing_ok=True)
    assert [c["with"] for c in radar.for_tasks(rp, root, tasks, works)["p0"]] == ["main"]
    assert not log.exists()
