"""Sub-tasks report back: the parent's inbox (durable, append-only), the monitor's entries and notices, `mux inbox`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from muxagent.state import inbox
from muxagent.state.inbox import EntryChanges


def add(state_dir: Path, parent: str, child: str, state: str = "idle") -> inbox.Entry:
    return inbox.append(
        state_dir, parent, time="2026-01-01T00:00:00Z", child=child, state=state, reason="hook: Stop",
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
    assert inbox.unread_counts(tmp_path) == {}
    for child in ("a", "b", "c"):
        add(tmp_path, "p", child)
    assert inbox.unread_counts(tmp_path) == {"p": 3}
    inbox.mark_read(tmp_path, "p", 2)
    inbox.mark_read(tmp_path, "p", 1)  # a reader that started earlier
    assert inbox.read_upto(tmp_path, "p") == 2
    assert inbox.unread_counts(tmp_path) == {"p": 1}
    inbox.mark_read(tmp_path, "p", 3)
    assert inbox.unread_counts(tmp_path) == {}
    assert len(inbox.entries(tmp_path, "p")) == 3  # reading consumes nothing
