"""Sub-tasks report back: the parent's inbox (durable, append-only), the monitor's entries and notices, `mux inbox`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import mux_ls, new_task, profile_with, run_mux, wait_until, window_task

from muxagent.commands import recovery, report
from muxagent.listing import iso_epoch
from muxagent.model import utc_iso
from muxagent.monitor import daemon
from muxagent.state import inbox, monitor_state
from muxagent.state.inbox import EntryChanges
from muxagent.state.store import Store
from muxagent.tmux.client import ScreenCache


def add(state_dir: Path, parent: str, child: str, state: str = "idle", at: str | None = None) -> inbox.Entry:
    return inbox.append(
        state_dir, parent, time=at or utc_iso(time.time()), child=child, state=state, reason="hook: Stop",
        exit_status=None, changes=EntryChanges(files=2, added=12, removed=3, ahead=1),
    )  # fmt: skip


def test_entries_get_increasing_ids_and_read_back_whole(tmp_path: Path) -> None:
    first, second = add(tmp_path, "p", "a"), add(tmp_path, "p", "b", "exited")
    assert (first.id, second.id) == (1, 2)
    assert inbox.entries(tmp_path, "p") == [first, second]
    assert inbox.entries(tmp_path, "p", since=1) == [second]
    assert inbox.entries(tmp_path, "other") == []
    assert add(tmp_path, "other", "c").id == 1  # ids count per inbox


def test_a_torn_last_line_loses_no_entry_and_the_next_append_is_read(tmp_path: Path) -> None:
    add(tmp_path, "p", "a")
    add(tmp_path, "p", "b")
    path = tmp_path / "inbox" / "p.jsonl"
    whole = path.read_bytes()
    # What a crash in the middle of an append leaves: part of a line, no newline.
    path.write_bytes(whole + whole.splitlines(keepends=True)[0][:25])
    assert [e.child for e in inbox.entries(tmp_path, "p")] == ["a", "b"]
    third = add(tmp_path, "p", "c")
    assert third.id == 3
    assert [e.child for e in inbox.entries(tmp_path, "p")] == ["a", "b", "c"]


def test_appenders_killed_mid_way_leave_a_readable_inbox_with_unique_ids(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from muxagent.state import inbox\n"
        "for n in range(100000):\n"
        "    inbox.append(__import__('pathlib').Path(sys.argv[1]), 'p', time='t', child=f'c{n}', state='idle',"
        " reason='r', exit_status=None, changes=None)\n"
        "    if n == 5: print('going', flush=True)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "going\n"
    for proc in procs:
        proc.kill()
        proc.wait()
    ids = [entry.id for entry in inbox.entries(tmp_path, "p")]
    assert len(ids) >= 12 and ids == list(range(1, len(ids) + 1))


def test_the_read_cursor_counts_unread_entries_and_never_moves_back(tmp_path: Path) -> None:
    created = {"p": "2000-01-01T00:00:00Z", "q": "2000-01-01T00:00:00Z"}
    assert inbox.unread_counts(tmp_path, created) == {}
    for child in ("a", "b", "c"):
        add(tmp_path, "p", child)
    assert inbox.unread_counts(tmp_path, created) == {"p": 3}
    inbox.mark_read(tmp_path, "p", 2)
    inbox.mark_read(tmp_path, "p", 1)  # a reader that started earlier
    assert inbox.read_upto(tmp_path, "p") == 2
    assert inbox.unread_counts(tmp_path, created) == {"p": 1}
    inbox.mark_read(tmp_path, "p", 3)
    assert inbox.unread_counts(tmp_path, created) == {}
    assert len(inbox.entries(tmp_path, "p")) == 3  # reading consumes nothing


def test_a_new_task_of_a_removed_parents_name_starts_with_an_empty_inbox(tmp_path: Path) -> None:
    add(tmp_path, "p", "a", at="2026-01-01T00:00:00Z")  # by the removed task
    assert inbox.unread_counts(tmp_path, {"p": "2026-06-01T00:00:00Z"}) == {}
    assert inbox.entries(tmp_path, "p", from_time="2026-06-01T00:00:00Z") == []
    assert len(inbox.entries(tmp_path, "p")) == 1  # kept on disk all the same


# ---------------------------------------------------------------------------------------------- the monitor

NOTIFY_ALL = ("idle", "exited", "waiting")


def state_dir(repo: Path) -> Path:
    return repo / ".git" / "mux"


def adopt(repo: Path, child: str, parent: str, notify: tuple[str, ...] = NOTIFY_ALL) -> None:
    """Make `child` a sub-task of `parent` by editing the registry: for parent names `mux new --parent` refuses."""
    with Store(state_dir(repo)).transaction() as registry:
        task = registry.get(child)
        assert task is not None
        registry.replace(replace(task, parent=parent, notify=notify))


def start_child(repo: Path, parent: str, child: str, prompt: str, agent: str = "fake") -> None:
    # As the parent's agent runs it from its pane (MUX_TASK), but in the main checkout, where a test runs it.
    run_mux("new", child, "-a", agent, "-p", prompt, "--parent", parent, cwd=repo)


def screen(repo: Path, name: str) -> str:
    # Joined: a notice is longer than the pane is wide.
    return run_mux("peek", name, cwd=repo).stdout.replace("\n", "")


def state(repo: Path, name: str) -> str:
    return str(mux_ls(repo)[name]["state"])


def window_names(server: libtmux.Server) -> dict[str, str]:
    """Task name -> the name of its window, as the monitor marks it."""
    return {task: str(window.window_name) for window in server.windows if (task := window_task(window))}


def recorded(repo: Path, parent: str) -> list[tuple[str, str]]:
    return [(entry.child, entry.state) for entry in inbox.entries(state_dir(repo), parent)]


@pytest.mark.usefixtures("fake_profile")
def test_three_children_finishing_together_give_their_parent_one_notice(repo: Path) -> None:
    new_task(repo, "boss", "-a", "fake", "-p", "busy 12")
    for child in ("a", "b", "c"):
        start_child(repo, "boss", child, f"write {child}.txt from {child}")
    wait_until(lambda: sorted(recorded(repo, "boss")) == [("a", "idle"), ("b", "idle"), ("c", "idle")], timeout=30)
    assert state(repo, "boss") == "working"
    wait_until(lambda: "got: [mux]" in screen(repo, "boss"), timeout=30)
    wait_until(lambda: inbox.noticed_upto(state_dir(repo), "boss") == 3)
    text = screen(repo, "boss")
    assert text.count("got: [mux]") == 1
    notice = text[text.index("got: [mux]") :]
    assert notice.startswith("got: [mux] 3 sub-tasks: a is idle: +1 -0 in 1 file, 0 commits ahead; b is idle")
    assert "c is idle" in notice and "All: mux inbox" in notice


@pytest.mark.usefixtures("fake_profile")
def test_a_child_finishing_while_its_parent_works_is_told_after_the_turn(repo: Path) -> None:
    new_task(repo, "boss", "-a", "fake", "-p", "busy 8")
    start_child(repo, "boss", "kid", "write out.txt hi")
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)
    assert state(repo, "boss") == "working" and "[mux]" not in screen(repo, "boss")
    wait_until(lambda: "got: [mux] sub-task kid is idle" in screen(repo, "boss"), timeout=30)
    text = screen(repo, "boss")
    # Typed into the running turn, the notice would show (the terminal echoes it) before the turn's last line.
    assert text.index("done") < text.index("[mux]")
    assert "got: [mux] sub-task kid is idle: +1 -0 in 1 file, 0 commits ahead. Review: mux diff kid." in text


@pytest.mark.usefixtures("fake_profile")
@pytest.mark.parametrize("reviver", [("ls",), ("inbox", "boss")])
def test_entries_survive_the_monitor_killed_and_the_tmux_server_killed(
    repo: Path, server: libtmux.Server, reviver: tuple[str, ...]
) -> None:
    new_task(repo, "boss", "-a", "fake")
    start_child(repo, "boss", "kid", "busy 1")
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)
    run_mux("send", "kid", "busy 4", cwd=repo)
    wait_until(lambda: window_names(server).get("kid") == "kid ⚙")  # the monitor has seen it work
    monitor = monitor_state.read(state_dir(repo))
    assert monitor is not None
    os.kill(monitor.pid, signal.SIGKILL)
    run_mux("wait", "kid", "--for", "idle", "--timeout", "20", cwd=repo)  # finished while no monitor ran
    assert recorded(repo, "boss") == [("kid", "idle")]
    run_mux(*reviver, cwd=repo)  # which starts a monitor again
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle"), ("kid", "idle")], timeout=20)

    server.kill()
    run_mux("restart", "--all", cwd=repo)
    wait_until(lambda: window_names(server).get("kid") == "kid ✓", timeout=20)
    wait_until(lambda: window_names(server).get("boss") == "boss ✓", timeout=20)
    # Back idle as it was: no new signal, and none of the old ones lost.
    assert recorded(repo, "boss") == [("kid", "idle"), ("kid", "idle")]
    shown = json.loads(run_mux("inbox", "boss", "--json", cwd=repo).stdout)
    assert [(e["id"], e["child"], e["state"]) for e in shown] == [(1, "kid", "idle"), (2, "kid", "idle")]


def hook_events(repo: Path, task: str, name: str) -> int:
    path = state_dir(repo) / "events" / f"{task}.jsonl"
    return sum(json.loads(line)["name"] == name for line in path.read_text().splitlines()) if path.exists() else 0


def test_a_turn_shorter_than_a_tick_still_reaches_the_parents_inbox(repo: Path, fake_profile: Path) -> None:
    """A sub-task idle at one tick and idle again at the next, with a whole turn between them, was never recorded."""
    profile_with(fake_profile, fake_profile.parent / "fakehook.toml", hooks="claude")  # fires Stop, as Claude does
    new_task(repo, "boss", "-a", "fake")
    start_child(repo, "boss", "kid", "write one.txt 1", agent="fakehook")
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)
    monitor = monitor_state.read(state_dir(repo))
    assert monitor is not None
    os.kill(monitor.pid, signal.SIGTERM)  # the ticks are the test's own from here
    ctx = recovery.open_and_recover(repo)
    wait_until(lambda: not daemon.is_running(ctx), timeout=10)
    watcher = daemon.Monitor(ctx)
    watcher.tick()
    assert recorded(repo, "boss") == [("kid", "idle")]

    run_mux("send", "kid", "write two.txt 2", cwd=repo)
    wait_until(lambda: hook_events(repo, "kid", "Stop") == 2)  # the whole turn, between two ticks
    watcher.tick()
    assert recorded(repo, "boss") == [("kid", "idle"), ("kid", "idle")]
    watcher.tick()  # and only once
    assert recorded(repo, "boss") == [("kid", "idle"), ("kid", "idle")]


def quiet_for(row: dict[str, Any], seconds: float) -> bool:
    last = iso_epoch(row["last_activity"]) if row["last_activity"] else None
    return row["state"] == "idle" and last is not None and time.time() - last > seconds


def counting_wrappers(bin_dir: Path, log: Path) -> None:
    """`git` and `tmux` first on PATH that note each start in `log`, then run the real program."""
    bin_dir.mkdir()
    for tool in ("git", "tmux"):
        real = shutil.which(tool)
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\necho {tool} >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)


@pytest.mark.usefixtures("fake_profile")
def test_quiet_ticks_start_no_git_or_tmux_for_the_inbox_or_notices(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_task(repo, "boss", "-a", "fake")
    start_child(repo, "boss", "kid", "write out.txt hi")
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)
    wait_until(lambda: inbox.noticed_upto(state_dir(repo), "boss") == 1, timeout=20)
    # Quiet: every agent done drawing (the notice's turn included), so no screen is read again while counting.
    wait_until(lambda: all(quiet_for(row, 2.0) for row in mux_ls(repo).values()), timeout=20)
    log = tmp_path / "started.log"
    counting_wrappers(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    ctx = recovery.open_and_recover(repo)
    watcher = daemon.Monitor(ctx, screens=ScreenCache(max_age=float("inf")))
    for _ in range(3):  # its first look: window names, each child checked against its inbox once
        watcher.tick()
    wait_until(lambda: not watcher.turns.pending())  # and the first sight's checkpoints, on their own thread

    def started(look: Callable[[], object], times: int = 5) -> int:
        log.unlink(missing_ok=True)
        for _ in range(times):
            look()
        return len(log.read_text().splitlines()) if log.exists() else 0

    snapshot_only = started(lambda: report.list_reports(ctx, with_changes=False, screens=watcher.screens))
    assert snapshot_only > 0  # the wrappers count
    assert started(watcher.tick) == snapshot_only
    assert recorded(repo, "boss") == [("kid", "idle")]


# A stand-in agent that keeps every line it is given, as Python's repr: an escape in it shows as `\x1b`.
RECORDER = """\
import sys
print("fake> ", end="", flush=True)
with open(sys.argv[1], "a", encoding="utf-8") as log:
    for line in iter(sys.stdin.readline, ""):
        print(repr(line.rstrip("\\n")), file=log, flush=True)
        print("fake> ", end="", flush=True)
"""


def test_escapes_in_a_childs_reason_never_reach_the_parents_agent(
    repo: Path, tmp_path: Path, fake_profile: Path
) -> None:
    """A repo's pattern is the reason of a state (`screen: PATTERN`); an OSC 52 in it once set the clipboard."""
    script, received = tmp_path / "recorder.py", tmp_path / "received.log"
    script.write_text(RECORDER)
    command = [sys.executable, str(script), str(received)]
    profile_with(fake_profile, fake_profile.parent / "recorder.toml", command=command)
    status = tomllib.loads(fake_profile.read_text())["status"]
    status["waiting"] = ["(?:\x1b]52;c;aGk=\x07\x1b\\[31m)?\\(y/n\\)\\s*\\Z"]
    profile_with(fake_profile, fake_profile.parent / "fakeesc.toml", status=status)
    new_task(repo, "boss", "-a", "recorder")
    start_child(repo, "boss", "kid", "ask", agent="fakeesc")
    wait_until(lambda: received.exists() and received.read_text(), timeout=30)
    [line] = received.read_text().splitlines()
    assert line.startswith("'[mux] sub-task kid is waiting (screen: (?:[31m)?\\\\(y/n\\\\)")
    assert "\\x1b" not in line and "\\x07" not in line
    [entry] = inbox.entries(state_dir(repo), "boss")
    assert entry.state == "waiting" and "\x1b" not in entry.reason and "\x07" not in entry.reason


# ---------------------------------------------------------------------------------------------- `mux inbox`


@pytest.mark.usefixtures("fake_profile")
def test_inbox_shows_entries_without_consuming_them_and_ls_counts_the_unread(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_task(repo, "boss", "-a", "fake")
    first, second = add(state_dir(repo), "boss", "a"), add(state_dir(repo), "boss", "b", "exited")
    assert mux_ls(repo)["boss"]["inbox_unread"] == 2
    assert "boss ✉2" in run_mux("ls", cwd=repo).stdout
    lines = run_mux("inbox", "boss", cwd=repo).stdout.splitlines()
    assert lines == [
        f"* #1 {first.time} a idle: +12 -3 in 2 files, 1 commit ahead (hook: Stop)",
        f"* #2 {second.time} b exited: +12 -3 in 2 files, 1 commit ahead (hook: Stop)",
    ]
    assert mux_ls(repo)["boss"]["inbox_unread"] == 0
    assert "✉" not in run_mux("ls", cwd=repo).stdout
    add(state_dir(repo), "boss", "c")
    monkeypatch.setenv("MUX_TASK", "boss")  # as in the parent's own pane
    rows = json.loads(run_mux("inbox", "--json", cwd=repo).stdout)
    assert [(row["id"], row["unread"]) for row in rows] == [(1, False), (2, False), (3, True)]
    assert rows[2]["changes"] == {"files": 2, "added": 12, "removed": 3, "ahead": 1}
    since = json.loads(run_mux("inbox", "--json", "--since", "2", cwd=repo).stdout)
    assert [row["id"] for row in since] == [3]
    assert len(inbox.entries(state_dir(repo), "boss")) == 3


@pytest.mark.usefixtures("fake_profile")
def test_inbox_without_a_task_or_of_an_unknown_one_says_so_in_one_line(repo: Path) -> None:
    new_task(repo, "boss", "-a", "fake")
    for args in ((), ("nobody",)):
        proc = run_mux("inbox", *args, cwd=repo, check=False)
        assert proc.returncode != 0 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "nothing in the inbox of boss" in run_mux("inbox", "boss", cwd=repo).stdout


@pytest.mark.usefixtures("fake_profile")
def test_inbox_follow_prints_entries_as_they_come_and_ends_on_ctrl_c(repo: Path) -> None:
    new_task(repo, "boss", "-a", "fake")
    add(state_dir(repo), "boss", "a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "muxagent", "inbox", "boss", "--follow", "--json"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["child"] == "a"
        add(state_dir(repo), "boss", "b", "waiting")
        later = json.loads(proc.stdout.readline())
        assert (later["id"], later["child"], later["state"]) == (2, "b", "waiting")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == ""
    assert inbox.read_upto(state_dir(repo), "boss") == 2


@pytest.mark.usefixtures("fake_profile")
def test_a_parent_no_task_can_be_named_stops_neither_the_monitor_nor_a_queued_prompt(repo: Path) -> None:
    """A registry edited by hand: the parent's name would make a path out of the inbox folder."""
    run_mux("new", "kid", "-a", "fake", "-p", "busy 1", cwd=repo)
    adopt(repo, "kid", "../../outside")  # `mux new --parent` refuses such a name
    wait_until(lambda: state(repo, "kid") == "idle", timeout=20)
    run_mux("send", "kid", "--when-idle", "still delivered", cwd=repo)
    wait_until(lambda: "got: still delivered" in screen(repo, "kid"), timeout=20)
    assert not (repo / ".git" / "outside.jsonl").exists() and not (repo.parent / "outside.jsonl").exists()
