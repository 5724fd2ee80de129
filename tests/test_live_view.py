"""The live view (issue 14): the monitor keeps every task's report current in one file, and `ls`, `status-line`,
`next-waiting` and `wait` show it only while it can be trusted: its monitor alive, the registry the same, the
tick it comes from recent. A dead monitor's, a torn or a foreign view is never shown."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import git, modules_imported, mux_ls, new_task, run_mux, wait_until

from muxagent import fastpath, naming
from muxagent.commands import context, report
from muxagent.model import State, TaskReport
from muxagent.monitor import daemon
from muxagent.monitor.daemon import window_title
from muxagent.state import inbox, intents, monitor_state, store, view, view_file
from muxagent.status import events

pytestmark = pytest.mark.usefixtures("fake_profile")

# Stands in for a monitor: holds the monitor lock and publishes, every 50 ms with a fresh heartbeat, the view the
# real monitor left, doctored as `mode` says. What the real monitor publishes is the truth, so only a doctored view
# tells whether a reader showed the view.
FAKE_MONITOR = """
import dataclasses, json, os, sys, time
from pathlib import Path
from muxagent.state import files, monitor_state, view

root, mode = Path(sys.argv[1]), sys.argv[2]
scratch = root.parent / "fake-monitor"
with files.locked(root / monitor_state.LOCK_FILE, wait=False):
    base = dataclasses.replace(view.read(root), pid=os.getpid())
    forged = {
        name: dataclasses.replace(entry, row={**entry.row, "reason": "forged"})
        for name, entry in base.tasks.items()
    }
    told = False
    while True:
        fresh = dataclasses.replace(base, tasks=forged, looked_at=time.time())
        if mode == "forged":
            view.publish(root, fresh)
        else:  # made aside: the state dir never holds a whole view
            scratch.mkdir(exist_ok=True)
            view.publish(scratch, fresh)
            whole = (scratch / view.VIEW_FILE).read_bytes()
            doctored = {
                "torn": whole[: len(whole) // 2],
                "garbage": b"\\x00\\xff not a view at all",
                "other-registry": whole.replace(base.registry.encode(), b"0123456789abcdef"),
            }[mode]
            files.atomic_write(root / view.VIEW_FILE, doctored, durable=False)
        if not told:  # once its first view is there
            print("holding", flush=True)
            told = True
        time.sleep(0.05)
"""


def state_dir(repo: Path) -> Path:
    return repo / ".git" / "mux"


@pytest.fixture
def quiet_task(repo: Path) -> Path:
    """One idle task with its monitor publishing a view of it; returns its worktree."""
    worktree = new_task(repo, "quiet", "-a", "fake")
    wait_until(lambda: (found := view_of(repo)) and found[0].status.state is State.IDLE, timeout=20)
    return worktree


def view_of(repo: Path) -> list[TaskReport] | None:
    return report.view_reports(context.open_repo(repo))


def kill_real_monitor(repo: Path) -> None:
    """SIGKILL the monitor, and any other that took the lock since (one `mux ls` revived while the first started).
    The monitor's tmux session goes first: a monitor a command started, still starting up, would take the lock a
    moment after the check found none (CI: the fake monitor's own lock then failed, BlockingIOError)."""
    ctx = context.open_repo(repo)
    session = naming.session_for(ctx.repo.main) + daemon.SESSION_SUFFIX
    for found in libtmux.Server(socket_name=ctx.tmux.socket).sessions.filter(session_name=session):
        found.kill()

    def none_left() -> bool:
        found = view.read(state_dir(repo))
        if found is not None and view.writer_alive(state_dir(repo), found):
            os.kill(found.pid, signal.SIGKILL)
            return False
        return not daemon.is_running(ctx)

    wait_until(none_left)


@pytest.fixture
def fake_monitor(repo: Path, quiet_task: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(mode: str) -> subprocess.Popen[str]:
        kill_real_monitor(repo)
        proc = subprocess.Popen(
            [sys.executable, "-c", FAKE_MONITOR, str(state_dir(repo)), mode], stdout=subprocess.PIPE, text=True
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_readers_show_the_view_of_a_live_monitor_and_never_a_killed_ones(
    repo: Path, fake_monitor: Callable[[str], subprocess.Popen[str]]
) -> None:
    fake = fake_monitor("forged")
    assert mux_ls(repo)["quiet"]["reason"] == "forged"  # the view is what `ls` shows
    assert "forged" in run_mux("ls", cwd=repo).stdout
    ctx = context.open_repo(repo)
    fake.send_signal(signal.SIGKILL)
    fake.wait()
    left = view.read(state_dir(repo))
    assert left is not None and time.time() - left.looked_at < view.MAX_AGE  # fresh-looking, and still not shown
    assert report.view_reports(ctx) is None
    assert mux_ls(repo)["quiet"]["reason"] == "screen: fake>\\s*\\Z"


@pytest.mark.parametrize("mode", ["torn", "garbage", "other-registry"])
def test_a_torn_garbage_or_foreign_view_is_never_shown(
    repo: Path, fake_monitor: Callable[[str], subprocess.Popen[str]], mode: str
) -> None:
    fake_monitor(mode)
    proc = run_mux("ls", "--json", cwd=repo)
    assert [row["reason"] for row in json.loads(proc.stdout)] == ["screen: fake>\\s*\\Z"]
    assert proc.stderr == ""


def test_no_prefix_of_a_view_file_reads_as_a_view(repo: Path, quiet_task: Path) -> None:
    whole = (state_dir(repo) / view.VIEW_FILE).read_bytes()
    assert view.read(state_dir(repo)) is not None
    scratch = repo.parent / "scratch"
    scratch.mkdir()
    for end in range(len(whole)):
        (scratch / view.VIEW_FILE).write_bytes(whole[:end])
        assert view.read(scratch) is None, end


def test_a_second_monitor_for_the_repository_never_publishes(repo: Path, quiet_task: Path) -> None:
    first = view.read(state_dir(repo))
    assert first is not None
    second = subprocess.run(
        [sys.executable, "-m", "muxagent", "_monitor"], cwd=repo, capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 0
    later = wait_until(lambda: (now := view.read(state_dir(repo))) and now.generation > first.generation + 2 and now)
    assert later.pid == first.pid


def append_hook(repo: Path, name: str, hook: str, state: State) -> float:
    path = events.events_path(state_dir(repo), name)
    now = time.time()
    events.append(path, events.HookEvent(now, "test", hook, state, launch=events.current_launch(path)))
    return now


def shown_within(repo: Path, since: float, bound: float, shows: Callable[[TaskReport], bool]) -> None:
    """Poll the view until it shows the change made at `since`; a read begun `bound` s after it must show it."""
    ctx = context.open_repo(repo)
    deadline = since + bound + 10
    while time.time() < deadline:
        begun = time.time()
        found = report.view_reports(ctx)
        if found is None:
            continue  # not trusted at this moment (a slow tick): a reader does the full work instead
        if shows(found[0]):
            return
        assert begun < since + bound, f"{begun - since:.2f} s after the change the view still shows {found[0]}"
    raise AssertionError("the view never showed the change")


def test_a_hook_event_is_shown_within_1s_and_a_file_change_within_2s(repo: Path, quiet_task: Path) -> None:
    since = append_hook(repo, "quiet", "PermissionRequest", State.WAITING)
    shown_within(repo, since, 1.0, lambda item: item.status.state is State.WAITING)

    since = time.time()
    (quiet_task / "notes.md").write_text("one\ntwo\n")
    shown_within(repo, since, 2.0, lambda item: item.changes is not None and item.changes.added_lines == 2)


def comparable(reports: list[TaskReport]) -> tuple[list[dict[str, Any]], str]:
    """What `ls --json` and `ls` print, without the pane's last activity (a pane that drew between the two reads)."""
    shown = report.TaskList(tuple(reports))
    rows = [{**row, "last_activity": None} for row in shown.to_json()]
    return rows, render_without_activity(shown)


def render_without_activity(shown: report.TaskList) -> str:
    still = tuple(
        dataclasses.replace(item, status=dataclasses.replace(item.status, last_activity=None)) for item in shown.reports
    )
    return report.TaskList(still).text(colour=False)


def agrees(repo: Path) -> bool:
    ctx = context.open_repo(repo)
    found = report.view_reports(ctx)
    return found is not None and comparable(found) == comparable(report.list_reports(ctx))


class Sequence:
    """Random steps on a few tasks, each followed by the view agreeing with a full recomputation."""

    def __init__(self, repo: Path, seed: int) -> None:
        self.repo = repo
        self.random = random.Random(seed)
        self.count = 0
        self.worktrees: dict[str, Path] = {}

    def new(self) -> None:
        self.count += 1
        name = f"t{self.count}"
        self.worktrees[name] = new_task(self.repo, name, "-a", "fake")

    def pick(self) -> tuple[str, Path]:
        name = self.random.choice(sorted(self.worktrees))
        return name, self.worktrees[name]

    def hook(self) -> None:
        name, _ = self.pick()
        hook, state = self.random.choice([("Stop", State.IDLE), ("PermissionRequest", State.WAITING)])
        append_hook(self.repo, name, hook, state)

    def edit(self) -> None:
        name, worktree = self.pick()
        # README.md is every task's: two tasks that edit it conflict, which the radar shows.
        path = worktree / self.random.choice([f"{name}.txt", "README.md"])
        path.write_text(f"{name}\n" * self.random.randint(1, 5))

    def commit(self) -> None:
        _, worktree = self.pick()
        (worktree / f"c{self.random.randint(0, 99)}.txt").write_text("committed\n")
        git(worktree, "add", "-A")
        git(worktree, "commit", "-q", "-m", "a step")

    def merge(self) -> None:
        name, _ = self.pick()
        merged = run_mux("merge", name, "-m", f"merge {name}", cwd=self.repo, check=False)
        if merged.returncode == 3:
            return  # a conflict with what is merged already: the task stays, and so does the radar's verdict
        assert merged.returncode == 0, merged.stderr
        del self.worktrees[name]
        self.new()

    def remove(self) -> None:
        name, _ = self.pick()
        run_mux("rm", name, "--force", cwd=self.repo)
        del self.worktrees[name]
        self.new()


def test_the_view_agrees_with_a_full_recomputation_after_random_steps(repo: Path) -> None:
    steps = Sequence(repo, seed=14)
    for _ in range(3):
        steps.new()
    actions = [steps.hook, steps.hook, steps.edit, steps.edit, steps.commit, steps.merge, steps.remove]
    for _ in range(14):
        action = steps.random.choice(actions)
        action()
        wait_until(lambda: agrees(repo), timeout=5)
    # And through the CLI, as a user runs it: `ls --json` from the view is the full recomputation's.
    ctx = context.open_repo(repo)
    assert report.view_reports(ctx) is not None
    by_cli = [{**row, "last_activity": None} for row in json.loads(run_mux("ls", "--json", cwd=repo).stdout)]
    assert by_cli == comparable(report.list_reports(ctx))[0]


def test_a_view_the_state_dir_refuses_costs_the_monitor_nothing_else(
    repo: Path, quiet_task: Path, server: libtmux.Server
) -> None:
    path = state_dir(repo) / view.VIEW_FILE

    def block() -> bool:
        # A folder where the file goes: every publish fails, as on a full or read-only disk.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        try:
            path.mkdir()
        except FileExistsError:
            return False
        return True

    wait_until(block)
    append_hook(repo, "quiet", "PermissionRequest", State.WAITING)
    marked = window_title("quiet", State.WAITING)
    wait_until(lambda: marked in [str(window.window_name) for window in server.windows], timeout=10)
    assert mux_ls(repo)["quiet"]["state"] == "waiting"


# The CLI itself, whatever muxagent.__main__ answers first: what the fast path must print byte for byte.
FULL_CLI = "import sys; sys.argv[0] = 'mux'; from muxagent import cli; cli.main()"
SHOWN_FORMS = [("ls",), ("ls", "--json"), ("status-line",), ("status-line", "--json"), ("status-line", "--tmux-styles")]


def full_cli(repo: Path, *args: str) -> bytes:
    proc = subprocess.run([sys.executable, "-c", FULL_CLI, *args], cwd=repo, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    return proc.stdout


def fast(repo: Path, *args: str) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "muxagent", *args], cwd=repo, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    return proc.stdout


def test_ls_and_status_line_from_the_view_print_what_the_cli_prints_byte_for_byte(repo: Path) -> None:
    parent = new_task(repo, "lead", "-a", "fake")
    run_mux("new", "helper", "-a", "fake", cwd=parent)  # a sub-task: its `waiting` goes into lead's inbox
    edited = new_task(repo, "edits", "-a", "fake")
    (edited / "README.md").write_text("changed\n")
    (edited / "new.txt").write_text("new\n")
    git(edited, "add", "new.txt")
    git(edited, "commit", "-q", "-m", "a commit")
    wait_until(lambda: mux_ls(repo)["helper"]["state"] == "idle", timeout=20)
    append_hook(repo, "helper", "PermissionRequest", State.WAITING)

    def ready() -> dict[str, dict[str, Any]] | None:
        found = mux_ls(repo)
        done = found["lead"]["inbox_unread"] and found["edits"]["ahead"] == 1 and found["helper"]["state"] == "waiting"
        return found if done else None

    rows = wait_until(ready, timeout=20)
    assert rows["helper"]["parent"] == "lead" and rows["edits"]["dirty_files"] == 1
    for form in SHOWN_FORMS:

        def same(form: tuple[str, ...] = form) -> bool:
            return fast(repo, *form) == full_cli(repo, *form)

        # The view moves on every tick (`pane quiet 3s`): the same bytes once both read the same view.
        wait_until(same, timeout=20)
        # Answered before the CLI; only an inbox to count (lead's) costs `ls` the inbox module and its imports.
        assert not {"typer", "subprocess"} & imported(repo, *form), form


def imported(repo: Path, *args: str) -> set[str]:
    return modules_imported(["-m", "muxagent", *args], cwd=repo)


def test_the_fast_path_finds_the_repository_git_finds_or_leaves_it_to_the_cli(
    repo: Path, quiet_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not {"typer", "subprocess", "dataclasses", "pathlib"} & imported(repo, "ls", "--json")
    common = os.path.realpath(repo / ".git")
    (repo / "sub" / "deeper").mkdir(parents=True)
    for where in (repo, repo / "sub" / "deeper", quiet_task):
        assert fastpath.common_dir(os.path.realpath(where)) == common, where
    assert fastpath.common_dir(os.path.realpath(repo / ".git" / "mux")) is None  # inside the git dir: git's to say
    assert fastpath.common_dir(str(repo.parent)) is None  # no repository at all
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(repo.parent))
    assert fastpath.common_dir(os.path.realpath(repo / "sub")) is None


def test_the_fast_paths_mirrors_of_the_state_dirs_names_hold(repo: Path) -> None:
    assert (fastpath.INTENTS_DIR, fastpath.INBOX_DIR) == (intents.INTENTS_DIR, inbox.INBOX_DIR)
    assert (view_file.TASKS_FILE, view_file.MONITOR_LOCK) == (store.TASKS_FILE, monitor_state.LOCK_FILE)
    assert context.open_repo(repo).store.root.name == fastpath.STATE_DIR


def test_a_hand_edited_registry_is_never_covered_by_the_view(repo: Path, quiet_task: Path) -> None:
    """A tasks.json edited by hand keeps its generation: the view of the file before is not shown for it (ls showed
    a record a tick old: test_a_recorded_window_id_that_is_now_another_repositorys_is_never_killed)."""
    first = view.read(state_dir(repo))
    assert first is not None
    monitor = wait_until(lambda: (now := view.read(state_dir(repo))) and now.generation > first.generation and now)
    os.kill(monitor.pid, signal.SIGSTOP)  # alive and holding its lock, publishing nothing more
    try:
        assert report.view_reports(context.open_repo(repo)) is not None  # the view as it stands is shown
        path = state_dir(repo) / "tasks.json"
        path.write_text(path.read_text().replace(f'"window": "{mux_ls(repo)["quiet"]["window"]}"', '"window": "@9"'))
        assert fastpath.answer("ls", {"--json"}, os.path.realpath(repo)) is None
        assert report.view_reports(context.open_repo(repo)) is None
    finally:
        os.kill(monitor.pid, signal.SIGCONT)
    assert mux_ls(repo)["quiet"]["state"] == "missing"
