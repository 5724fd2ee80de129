"""Sub-tasks under attack: two repositories on one tmux server, a state dir that turns read-only or fills up, a
worktree path that is not UTF-8, Ctrl-C and SIGKILL inside `mux rm --recursive`, notices bent by a repository's
config, and what `mux gc` keeps of an inbox."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import libtmux
import pytest
from conftest import git, make_repo, mux_ls, new_task, profile_with, run_mux, wait_until, window_task, write_toml
from hostile_helpers import read_only, run_raw
from merge_helpers import refs
from test_inbox import RECORDER

from muxagent import naming
from muxagent.commands import recovery
from muxagent.errors import StoreError
from muxagent.model import utc_iso
from muxagent.monitor import daemon, family
from muxagent.state import inbox
from muxagent.state.store import Store

pytestmark = pytest.mark.usefixtures("fake_profile")


def state_dir(repo: Path) -> Path:
    return repo / ".git" / "mux"


def recorded(repo: Path, parent: str) -> list[tuple[str, str]]:
    return [(entry.child, entry.state) for entry in inbox.entries(state_dir(repo), parent)]


def screen(repo: Path, name: str) -> str:
    # Joined: a notice is longer than the pane is wide.
    return run_mux("peek", name, cwd=repo).stdout.replace("\n", "")


def start_child(repo: Path, parent: str, child: str, prompt: str, *args: str) -> None:
    run_mux("new", child, "-a", "fake", "-p", prompt, "--parent", parent, *args, cwd=repo)


def monitor_output(server: libtmux.Server) -> str:
    """What the repository's monitor printed in its own window (the one window that is no task's)."""
    found = [
        "\n".join(window.active_pane.capture_pane(start=-1000))
        for window in server.windows
        if not window_task(window) and str(window.session_name).endswith(daemon.SESSION_SUFFIX) and window.active_pane
    ]
    return "\n".join(found)


# ------------------------------------------------------------------------------ a state dir that stops taking writes


@contextmanager
def tiny_disk(folder: Path, size_kb: int = 64) -> Iterator[Path]:
    """A tmpfs of `size_kb` mounted on `folder` (made empty), unmounted afterwards; skips where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and mount rights): {proc.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until its file system is full; returns it (delete it to make room)."""
    filler = folder / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    return filler


def children_memory(repo: Path) -> dict[str, str]:
    return {name: item.state for name, item in inbox.load_recorded(state_dir(repo)).items()}


def boss_and_busy_kid(repo: Path) -> None:
    """`boss` idle, and its sub-task `kid` working for a few seconds, seen working by the monitor."""
    new_task(repo, "boss", "-a", "fake")
    start_child(repo, "boss", "kid", "busy 4")
    wait_until(lambda: children_memory(repo).get("kid") == "working", timeout=20)


def says_once(server: libtmux.Server, words: str) -> str:
    """The monitor's one line naming `words`, once it printed it; fails if it printed it more than once."""
    wait_until(lambda: words in monitor_output(server), timeout=20)
    lines = [line for line in monitor_output(server).splitlines() if words in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_read_only_inbox_holds_the_signal_until_it_is_writable_and_the_monitor_says_so_once(
    repo: Path, server: libtmux.Server
) -> None:
    boss_and_busy_kid(repo)
    with read_only(state_dir(repo) / "inbox"):
        wait_until(lambda: mux_ls(repo)["kid"]["state"] == "idle", timeout=20)
        line = says_once(server, "could not record kid")
        assert line.startswith("mux monitor: ") and "Traceback" not in monitor_output(server)
        for _ in range(4):  # more ticks, still one line
            wait_until(lambda: run_mux("ls", cwd=repo).returncode == 0)
        says_once(server, "could not record kid")
        assert run_mux("inbox", "boss", cwd=repo).stdout == "nothing in the inbox of boss\n"
        assert recorded(repo, "boss") == []
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=20)
    wait_until(lambda: "got: [mux] sub-task kid is idle" in screen(repo, "boss"), timeout=20)
    assert recorded(repo, "boss") == [("kid", "idle")]  # once, not once per failed tick
    assert "internal error" not in monitor_output(server)


def test_a_full_disk_tears_no_entry_and_the_signal_is_recorded_once_there_is_room(
    repo: Path, server: libtmux.Server
) -> None:
    new_task(repo, "boss", "-a", "fake")
    with tiny_disk(state_dir(repo) / "inbox") as folder:
        start_child(repo, "boss", "kid", "busy 4")
        wait_until(lambda: children_memory(repo).get("kid") == "working", timeout=20)
        filler = fill(folder)
        wait_until(lambda: mux_ls(repo)["kid"]["state"] == "idle", timeout=20)
        says_once(server, "could not record kid")
        for _ in range(4):  # more ticks, still one line
            wait_until(lambda: run_mux("ls", cwd=repo).returncode == 0)
        says_once(server, "could not record kid")
        assert run_mux("inbox", "boss", cwd=repo).stdout == "nothing in the inbox of boss\n"
        assert not (folder / "boss.jsonl").exists() or (folder / "boss.jsonl").read_bytes() == b""
        filler.unlink()
        wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=20)
        wait_until(lambda: "got: [mux] sub-task kid is idle" in screen(repo, "boss"), timeout=20)
        assert (folder / "boss.jsonl").read_bytes().count(b"\n") == 1  # one whole line, nothing torn before it
    assert "internal error" not in monitor_output(server)


def test_ls_and_inbox_answer_over_a_read_only_state_dir(repo: Path) -> None:
    new_task(repo, "boss", "-a", "fake")
    inbox.append(state_dir(repo), "boss", time=utc_iso(time.time()), child="kid", state="idle", reason="hook: Stop",
                 exit_status=None, changes=None)  # fmt: skip
    with read_only(state_dir(repo)):
        rows = json.loads(run_mux("ls", "--json", cwd=repo).stdout)
        assert [row["name"] for row in rows] == ["boss"] and rows[0]["inbox_unread"] == 1
        proc = run_mux("inbox", "boss", cwd=repo, check=False)
        assert proc.returncode == 0 and "kid idle" in proc.stdout, proc
        assert len(proc.stderr.splitlines()) == 1 and "cannot" in proc.stderr and "Traceback" not in proc.stderr
    assert inbox.read_upto(state_dir(repo), "boss") == 0  # still unread: nothing was marked


def put(folder: Path, child: str, reason: str = "hook: Stop", parent: str = "boss") -> inbox.Entry:
    return inbox.append(
        folder, parent, time="2026-01-01T00:00:00Z", child=child, state="idle", reason=reason, exit_status=None,
        changes=None,
    )  # fmt: skip


def test_an_append_the_disk_cut_short_leaves_nothing_that_reads_as_an_entry(tmp_path: Path) -> None:
    """The write that fills the disk took all of the line but its newline: read back, it was a whole entry, and
    the monitor's retry wrote it a second time."""
    scratch = tmp_path / "scratch"
    put(scratch, "first")
    line = len((scratch / "inbox" / "boss.jsonl").read_bytes().splitlines(keepends=True)[0])
    put(scratch, "kid")
    second = len((scratch / "inbox" / "boss.jsonl").read_bytes().splitlines(keepends=True)[1])
    root = tmp_path / "state"
    with tiny_disk(root / "inbox") as folder:
        # The first line ends where the disk's last free page holds all of the second line but its newline.
        put(root, "first", reason="x" * (4096 - (second - 1) - line + len("hook: Stop")))
        assert (folder / "boss.jsonl").stat().st_size == 4096 - (second - 1)
        filler = fill(folder)
        with pytest.raises(StoreError):
            put(root, "kid")
        assert [entry.child for entry in inbox.entries(root, "boss")] == ["first"]
        filler.unlink()
        put(root, "kid")  # the monitor trying again
        assert [(entry.id, entry.child) for entry in inbox.entries(root, "boss")] == [(1, "first"), (2, "kid")]


# ------------------------------------------------------------------------------------------ notices bent out of shape

LONGEST_NAME = "a" * 40 + "-limit.x"  # 48 characters, the most a task name may have


def test_a_repo_pattern_and_a_name_at_the_limit_make_one_short_plain_notice(
    repo: Path, tmp_path: Path, fake_profile: Path
) -> None:
    """A `.mux.toml` (read untrusted: screen patterns are no code) picks the waiting reason, `screen: PATTERN`:
    huge, with a newline, an OSC 52, a CSI and a Unicode line break in it."""
    script, received = tmp_path / "recorder.py", tmp_path / "received.log"
    script.write_text(RECORDER)
    profile_with(
        fake_profile, fake_profile.parent / "recorder.toml", command=[sys.executable, str(script), str(received)]
    )
    bent = "(?:\n|\x1b]52;c;aGk=\x07|\x1b\\[2J|\u2028|" + "[" + "x" * 5000 + "])?\\(y/n\\)\\s*\\Z"
    write_toml(repo / ".mux.toml", {"agents": {"fake": {"status": {"waiting": [bent]}}}})
    git(repo, "add", ".mux.toml")
    git(repo, "commit", "-q", "-m", "a hostile config")
    new_task(repo, "boss", "-a", "recorder")
    start_child(repo, "boss", LONGEST_NAME, "ask")
    wait_until(lambda: received.exists() and received.read_text(), timeout=30)
    wait_until(lambda: inbox.noticed_upto(state_dir(repo), "boss") == 1)
    [line] = received.read_text().splitlines()  # one Enter: nothing submitted early
    notice = ast.literal_eval(line)
    assert notice.startswith(f"[mux] sub-task {LONGEST_NAME} is waiting (screen: (?: |")
    assert notice.endswith(f"Answer: mux send {LONGEST_NAME} TEXT. All: mux inbox")
    assert len(notice) <= 400 and notice.isprintable(), notice


def test_a_notice_of_many_sub_tasks_or_of_a_hand_edited_inbox_stays_one_short_plain_line() -> None:
    reason = "screen: \u2028\x1b]52;c;aGk=\x07" + "x" * 3000 + "\n\r\x9b31m"
    many = [
        inbox.Entry(n, "2026-01-01T00:00:00Z", f"{LONGEST_NAME[:-2]}{n:02d}", "waiting", reason, None, None)
        for n in range(12)
    ]
    text = family.notice_text(many)
    assert text.startswith(f"[mux] 12 sub-tasks: {many[0].child} is waiting (screen:  xxx")
    assert "; and " in text and text.endswith(" more. Review: mux diff NAME. Merge: mux merge NAME. All: mux inbox")
    assert len(text) <= 400 and text.isprintable(), text
    # A name and a reason no mux wrote: far too long, and not UTF-8 (`mux send` refused it: never told).
    edited = inbox.Entry(1, "2026-01-01T00:00:00Z", "x" * 900 + "\udcff", "idle", "\udcfe", None, None)
    text = family.notice_text([edited])
    assert len(text) <= 400 and text.isprintable() and naming.validate_prompt(text) == text


# ------------------------------------------------------------------------------------------------- gc of inboxes


def inbox_files(repo: Path) -> list[str]:
    folder = state_dir(repo) / "inbox"
    return sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) if folder.is_dir() else []


def test_gc_keeps_the_inbox_of_a_restorable_parent_and_drops_those_gone_for_good(repo: Path) -> None:
    new_task(repo, "boss", "-a", "fake")
    start_child(repo, "boss", "kid", "write out.txt hi")
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)
    wait_until(lambda: inbox.noticed_upto(state_dir(repo), "boss") == 1, timeout=20)
    run_mux("inbox", "boss", cwd=repo)  # its read cursor too
    put(state_dir(repo), "a", parent="ghost")  # a parent no task or recovery ref will ever bring back
    put(state_dir(repo), "orphan", parent="ghost-kid-parent")  # no task, but a restored sub-task reports to it
    run_mux("new", "orphan", "-a", "fake", cwd=repo)
    with Store(state_dir(repo)).transaction() as registry:
        orphan = registry.get("orphan")
        assert orphan is not None
        registry.replace(replace(orphan, parent="ghost-kid-parent"))
    run_mux("rm", "boss", "--recursive", "--force", cwd=repo)
    assert inbox_files(repo) == ["boss.jsonl", "boss.noticed", "boss.read", "ghost-kid-parent.jsonl", "ghost.jsonl"]

    assert run_mux("gc", "--older-than", "30", "--dry-run", cwd=repo).stdout == "would drop the inbox of ghost\n"
    assert "ghost.jsonl" in inbox_files(repo)
    assert run_mux("gc", "--older-than", "30", cwd=repo).stdout == "dropped the inbox of ghost\n"
    assert inbox_files(repo) == ["boss.jsonl", "boss.noticed", "boss.read", "ghost-kid-parent.jsonl"]

    run_mux("restore", "boss", cwd=repo)  # its recovery ref kept its inbox: the sub-task's report is there
    [entry] = json.loads(run_mux("inbox", "boss", "--json", cwd=repo).stdout)
    assert (entry["child"], entry["state"], entry["unread"]) == ("kid", "idle", False)
    run_mux("rm", "boss", "--force", cwd=repo)
    out = run_mux("gc", "--older-than", "0", cwd=repo).stdout.splitlines()
    assert out[-1] == "dropped the inbox of boss" and all(line.startswith("dropped refs/mux/") for line in out[:-1])
    assert inbox_files(repo) == ["ghost-kid-parent.jsonl"]
    assert "kid" not in inbox.load_recorded(state_dir(repo))  # nor the monitor's memory of its sub-task


def test_gc_over_a_read_only_inbox_still_answers_and_drops_nothing_it_cannot(repo: Path) -> None:
    put(state_dir(repo), "a", parent="ghost")
    with read_only(state_dir(repo) / "inbox"):
        proc = run_mux("gc", "--older-than", "30", cwd=repo)
    assert proc.stdout == "no recovery ref is older than 30 days\n"
    assert proc.stderr.startswith("mux: cannot open the inbox in ") and proc.stderr.endswith(": no inbox was dropped\n")
    assert inbox_files(repo) == ["ghost.jsonl"]
    assert run_mux("gc", "--older-than", "30", cwd=repo).stdout == "dropped the inbox of ghost\n"


# ------------------------------------------------------------------------- Ctrl-C and SIGKILL in `rm --recursive`

MEMBERS = ("grandchild", "child", "parent")  # the order `rm --recursive parent` removes them in


def checked_out(repo: Path, name: str) -> Path:
    return Path(wait_until(lambda: (row := mux_ls(repo)[name])["reason"] != "checking out" and row)["worktree"])


def three_generations_with_work(repo: Path) -> dict[str, Path]:
    """parent -> child -> grandchild, each with an untracked file that exists nowhere else; name -> worktree."""
    worktrees = {"parent": new_task(repo, "parent", "-a", "fake")}
    for name, above in (("child", "parent"), ("grandchild", "child")):
        run_mux("new", name, "-a", "fake", "--parent", above, "--notify", "none", cwd=repo)
        worktrees[name] = checked_out(repo, name)
    for name, worktree in worktrees.items():
        (worktree / f"{name}.txt").write_text(f"only copy of {name}'s work\n")
    return worktrees


def saved_work(repo: Path, name: str) -> str | None:
    """The work file in the newest recovery ref of `name`, or None when it has none."""
    refs = git(repo, "for-each-ref", "--sort=refname", "--format=%(refname)", f"refs/mux/recovery/{name}/").split()
    if not refs:
        return None
    return subprocess.run(["git", "show", f"{refs[-1]}:{name}.txt"], cwd=repo, capture_output=True, text=True).stdout


def assert_each_intact_or_removed_with_its_work_saved(repo: Path, worktrees: dict[str, Path]) -> None:
    rows = mux_ls(repo)  # the next mux finishes or rolls back what was cut short
    branches = git(repo, "branch", "--format=%(refname:short)").split()
    for name in MEMBERS:
        work = f"only copy of {name}'s work\n"
        if name in rows:
            assert worktrees[name].is_dir() and (worktrees[name] / f"{name}.txt").read_text() == work, name
            assert f"mux/{name}" in branches and rows[name]["state"] != "missing", (name, rows[name]["reason"])
        else:
            assert not worktrees[name].exists() and f"mux/{name}" not in branches, name
            assert saved_work(repo, name) == work, name
    # A family stays whole: no member is left while the one it reports to is gone.
    for name in rows:
        parent = rows[name]["parent"]
        assert parent is None or parent in rows, rows


def finish_and_check_nothing_lost(repo: Path, worktrees: dict[str, Path]) -> None:
    assert_each_intact_or_removed_with_its_work_saved(repo, worktrees)
    if "parent" in mux_ls(repo):
        run_mux("rm", "parent", "--recursive", "--force", cwd=repo)  # run again: it finishes
    assert mux_ls(repo) == {} and not any(path.exists() for path in worktrees.values())
    for name in MEMBERS:
        assert saved_work(repo, name) == f"only copy of {name}'s work\n", name
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


# Every step of one member's removal is killed in tests/test_faults.py; here, one before the point of no return,
# one after it, and the step between members.
@pytest.mark.parametrize("step", ["rm:after-recovery-ref", "rm:after-worktree", "rm-recursive:after-member"])
def test_rm_recursive_killed_at_each_step_loses_nothing_and_runs_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    worktrees = three_generations_with_work(repo)
    with monkeypatch.context() as crashing:
        crashing.setenv("MUX_CRASH_AT", step)
        proc = run_mux("rm", "parent", "--recursive", "--force", cwd=repo, check=False)
    assert proc.returncode == 99, proc  # killed there, as by SIGKILL or a power cut
    finish_and_check_nothing_lost(repo, worktrees)


def interrupting_git(bin_dir: Path, words: str, member: str, armed: Path) -> None:
    """`git` first on PATH: the first call for `member` (in its worktree, or naming its branch, ref or worktree)
    whose arguments hold `words`, while `armed` exists, is hit by Ctrl-C, which reaches mux and the git it started
    (that git dies doing nothing); every other call runs the real git."""
    bin_dir.mkdir()
    real = shutil.which("git")
    (bin_dir / "git").write_text(
        "#!/bin/sh\n"
        f'case " $* $PWD " in *" {words} "*"/{member}"[/\\ ]*)\n'
        f'  if rm "{armed}" 2>/dev/null; then kill -INT $PPID; exit 130; fi;;\n'
        "esac\n"
        f'exec "{real}" "$@"\n'
    )
    (bin_dir / "git").chmod(0o755)


@pytest.mark.parametrize(
    ("member", "words"),
    # Mid-way through the second member, and in the last one's last step (the git steps of one member's removal
    # each take a kill in tests/test_faults.py).
    [("child", "worktree remove"), ("parent", "update-ref")],
)  # fmt: skip
def test_ctrl_c_in_rm_recursive_loses_nothing_says_what_went_and_runs_again(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: str, words: str
) -> None:
    worktrees = three_generations_with_work(repo)
    armed = tmp_path / "armed"
    interrupting_git(tmp_path / "bin", words, member, armed)
    armed.touch()
    with monkeypatch.context() as interrupting:
        interrupting.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        proc = run_mux("rm", "parent", "--recursive", "--force", cwd=repo, check=False)
    assert not armed.exists(), "no such git call"
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc
    assert proc.stderr.splitlines()[-1] == "mux: interrupted"
    before = MEMBERS[: MEMBERS.index(member)]
    for name in before:  # each member removed before Ctrl-C is named, with its way back
        assert f"mux: removed {name} before that (restore with `mux restore {name} --at " in proc.stderr, proc.stderr
    finish_and_check_nothing_lost(repo, worktrees)


# ------------------------------------------------------------------------------- two repositories, one tmux server


def own_part(repo: Path) -> tuple[object, ...]:
    """What another repository's commands must leave alone: refs, worktrees, rows (with their windows), inboxes."""
    rows = {name: (row["worktree"], row["window"], row["parent"]) for name, row in mux_ls(repo).items()}
    folder = state_dir(repo) / "inbox"
    inboxes = {path.name: path.read_bytes() for path in folder.iterdir() if path.suffix in (".jsonl", ".read")}
    return refs(repo), git(repo, "worktree", "list", "--porcelain"), rows, inboxes


def test_two_repositories_with_the_same_task_names_keep_their_families_apart(tmp_path: Path) -> None:
    first, second = make_repo(tmp_path / "one" / "proj"), make_repo(tmp_path / "two" / "proj")  # same basename
    for repo, prompt in ((first, "write a.txt from one"), (second, "commit b.txt from two")):
        new_task(repo, "boss", "-a", "fake")
        start_child(repo, "boss", "kid", prompt)
    told = {
        first: "got: [mux] sub-task kid is idle: +1 -0 in 1 file, 0 commits ahead.",
        second: "got: [mux] sub-task kid is idle: +1 -0 in 1 file, 1 commit ahead.",
    }
    for repo, notice in told.items():
        wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)  # noqa: B023
        wait_until(lambda: notice in screen(repo, "boss"), timeout=30)  # noqa: B023
    for repo in told:
        wait_until(lambda: inbox.noticed_upto(state_dir(repo), "boss") == 1)  # noqa: B023
        # Its own child's notice, once: not the other's.
        assert screen(repo, "boss").count("got: [mux]") == 1, screen(repo, "boss")
        rows = mux_ls(repo)
        assert {name: row["parent"] for name, row in rows.items()} == {"boss": None, "kid": "boss"}
        assert all(Path(row["worktree"]).is_relative_to(repo.parent) for row in rows.values())
        [entry] = json.loads(run_mux("inbox", "boss", "--json", cwd=repo).stdout)
        assert entry["changes"]["ahead"] == (0 if repo == first else 1)
    untouched = own_part(second)

    run_mux("rm", "boss", "--recursive", "--force", cwd=first)

    assert mux_ls(first) == {} and own_part(second) == untouched
    assert (Path(mux_ls(second)["kid"]["worktree"]) / "b.txt").exists()


# ------------------------------------------------------------------------------------ a path that is not UTF-8


def raw(*args: str, cwd: Path) -> str:
    """`mux ARGS` whose output holds a path that is not UTF-8 (printed as its bytes); its stdout, checked."""
    proc = run_raw(*args, cwd=cwd)
    assert proc.returncode == 0 and proc.stderr == "", proc
    return proc.stdout


def test_a_family_under_a_folder_whose_name_is_not_utf8_reports_and_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / os.fsdecode(b"caf\xe9-\xff") / "proj")  # latin-1 bytes, as an old archive has
    raw("new", "boss", "-a", "fake", cwd=repo)
    parent = checked_out(repo, "boss")
    raw("new", "kid", "-a", "fake", "-p", "commit k.txt from the kid", cwd=parent)  # from inside the parent
    wait_until(lambda: recorded(repo, "boss") == [("kid", "idle")], timeout=30)
    notice = "got: [mux] sub-task kid is idle: +1 -0 in 1 file, 1 commit ahead."
    wait_until(lambda: notice in raw("peek", "boss", cwd=repo).replace("\n", ""), timeout=20)
    rows = mux_ls(repo)
    assert rows["kid"]["parent"] == "boss" and Path(rows["kid"]["worktree"]).parent == parent.parent
    [line] = raw("inbox", "boss", cwd=parent).splitlines()
    assert line.startswith("* #1 ") and " kid idle: +1 -0 in 1 file, 1 commit ahead (screen: " in line, line
    wait_until(lambda: mux_ls(repo)["boss"]["state"] == "idle", timeout=20)
    monkeypatch.setenv("MUX_TASK", "boss")  # the parent's agent merges its sub-task
    raw("merge", "kid", cwd=parent)
    assert (parent / "k.txt").read_text() == "from the kid\n" and "kid" not in mux_ls(repo)
    assert git(parent, "status", "--porcelain") == ""


def test_a_notice_cursor_that_cannot_move_ends_no_tick(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The notice was typed, then its cursor met a read-only inbox: the error ended the monitor's tick there, before
    the other tasks' queued prompts, every time."""
    new_task(repo, "boss", "-a", "fake")
    put(state_dir(repo), "kid")
    told = family.Family(recovery.open_and_recover(repo), {}, {})
    with read_only(state_dir(repo) / "inbox"):
        told.told("boss", 1)
        told.told("boss", 1)
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("mux monitor: could not note that boss was told: cannot open the inbox in ")
    told.told("boss", 1)
    assert inbox.noticed_upto(state_dir(repo), "boss") == 1
