"""Bytes and limits mux must survive (issue 10, items 14 and 18). The promises held here:

- Names are bytes: a file name, a repo path or a text that is not UTF-8 is stored losslessly (journal, intents,
  registry) and comes back byte for byte (`rm --force` + `restore`, `merge`).
- mux never bricks itself: a record of an interrupted command that no mux can act on is set aside with one warning,
  and every later command works.
- Bad input or a hostile environment (a read-only `.git/mux`, prompts that are not UTF-8 or hold a NUL, huge
  prompts, nan/inf ages, a worktree that is a file, a deleted cwd) gives one line on stderr and a non-zero exit,
  never a traceback, and changes nothing on disk.
- A prompt reaches the agent intact, however long: past what a command line holds it is pasted once the agent is
  ready, with nothing different said to the user; the monitor survives a queued prompt it cannot deliver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, make_repo, mux_ls, run_mux, wait_until
from hostile_helpers import assert_one_line_error, disk_state, read_only, run_raw
from merge_helpers import start

pytestmark = pytest.mark.usefixtures("fake_profile")

# A real Latin-1 name on disk: b"caf\xe9.txt" is no UTF-8, so Python holds it as 'caf\udce9.txt'.
LATIN1_NAME = os.fsdecode(b"caf\xe9.txt")


def intents_dir(repo: Path) -> Path:
    return repo / ".git" / "mux" / "intents"


# ---------------------------------------------------------------------------------------------- item 14


def test_rm_force_and_restore_keep_a_file_whose_name_is_not_utf8(repo: Path) -> None:
    worktree = start(repo, "bytes")
    (worktree / LATIN1_NAME).write_bytes(b"only copy\n")
    proc = run_mux("rm", "--force", "bytes", cwd=repo)
    assert "removed bytes" in proc.stdout and "Traceback" not in proc.stderr
    assert not list(intents_dir(repo).glob("*.json"))  # nothing left for the next command to replay
    assert mux_ls(repo) == {}
    run_mux("restore", "bytes", cwd=repo)
    assert (worktree / LATIN1_NAME).read_bytes() == b"only copy\n"
    journal = (repo / ".git" / "mux" / "journal.jsonl").read_bytes()
    journal.decode("utf-8")  # still valid UTF-8 for every other reader
    lost = [json.loads(line)["lost"] for line in journal.splitlines() if b'"action":"recovery"' in line]
    assert any(LATIN1_NAME in item for item in lost[0]), lost


def test_merge_brings_home_a_file_whose_name_is_not_utf8_after_the_base_moved(repo: Path) -> None:
    worktree = start(repo, "bytes")
    (worktree / LATIN1_NAME).write_bytes(b"agent's work\n")
    (worktree / os.fsdecode(b"caf\xe9.log")).write_bytes(b"ignored, so saved in the recovery ref\n")
    (repo / "base.txt").write_text("the base moved on\n")
    git(repo, "add", "base.txt")
    git(repo, "commit", "-q", "-m", "base moves")
    proc = run_mux("merge", "bytes", cwd=repo)
    assert "merged bytes into main" in proc.stdout and "Traceback" not in proc.stderr
    assert (repo / LATIN1_NAME).read_bytes() == b"agent's work\n"
    assert mux_ls(repo) == {}
    ref = git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/recovery/bytes/").split()[-1]
    saved = subprocess.run(["git", "ls-tree", "-r", "--name-only", "-z", ref], cwd=repo, capture_output=True).stdout
    assert b"caf\xe9.log" in saved.split(b"\0")


@pytest.mark.parametrize("ask", [False, True], ids=["sync", "sync-ask"])
def test_sync_hands_a_conflict_on_a_file_whose_name_is_not_utf8_to_the_agent(repo: Path, ask: bool) -> None:
    worktree = start(repo, "bytes")
    for where, text in ((worktree, "the agent's\n"), (repo, "the base's\n")):
        (where / LATIN1_NAME).write_text(text)
        git(where, "add", "-A")
        git(where, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "both add it")
    proc = run_raw("sync", "bytes", *(["--ask"] if ask else []), cwd=repo)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    if ask:  # the agent was told which file, as its own git names it
        assert "asked to resolve" in proc.stderr
        wait_until(lambda: "caf\\351.txt" in run_mux("peek", "bytes", cwd=repo).stdout)
    assert "caf\ufffd.txt" in proc.stdout  # the name's own bytes, as the terminal shows them
    assert b"<<<<<<<" in (worktree / LATIN1_NAME).read_bytes()
    assert mux_ls(repo)["bytes"]["state"] == "waiting"


def test_new_copies_and_logs_an_untracked_file_whose_name_is_not_utf8(repo: Path) -> None:
    (repo / ".mux.toml").write_text('copy = ["*.local"]\n')
    (repo / os.fsdecode(b"caf\xe9.local")).write_bytes(b"a local secret\n")
    worktree = start(repo, "bytes")
    assert (worktree / os.fsdecode(b"caf\xe9.local")).read_bytes() == b"a local secret\n"
    assert "copied caf\ufffd.local" in run_raw("logs", "bytes", cwd=repo).stdout


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"op": "rm", "name": "caf\xe9"', b"[1, 2]", b"\xff\xfe\x00"],
    ids=["torn", "latin1-torn", "not-an-object", "binary"],
)
def test_an_unreadable_record_of_an_interrupted_command_is_set_aside_with_one_warning(
    repo: Path, content: bytes
) -> None:
    intents_dir(repo).mkdir(parents=True)
    record = intents_dir(repo) / "1-1-rm.json"
    record.write_bytes(content)
    first = run_mux("ls", cwd=repo)
    assert first.stderr.count("\n") == 1 and "set it aside as" in first.stderr, first.stderr
    assert not record.exists() and (intents_dir(repo) / "1-1-rm.json.set-aside").read_bytes() == content
    assert run_mux("ls", cwd=repo).stderr == ""  # said once; every later command just works


def test_a_record_no_mux_can_act_on_is_set_aside_instead_of_stopping_every_command(repo: Path) -> None:
    intents_dir(repo).mkdir(parents=True)
    # A merge record whose result commit cannot even be passed to git: finishing it raises no MuxError. (No task
    # runs, so no monitor can pick the record up before the command under test.)
    record = {"op": "merge", "name": "gone", "target": "main", "old": "0" * 40, "new": "a\0b", "pid": 1}
    (intents_dir(repo) / "2-1-merge.json").write_text(json.dumps(record))
    first = run_mux("ls", "--json", cwd=repo)
    assert "Traceback" not in first.stderr and "set it aside as" in first.stderr, first.stderr
    assert first.stderr.count("\n") == 1 and json.loads(first.stdout) == []
    assert (intents_dir(repo) / "2-1-merge.json.set-aside").exists()
    assert run_mux("ls", cwd=repo).stderr == ""


def test_a_repository_whose_path_is_not_utf8_works_end_to_end(tmp_path: Path, tmux_socket: str) -> None:
    # The tmux server (and so the agent) is started without the strict stdout below, which is mux's to survive.
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", "keep"], check=True)
    repo = make_repo(Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9po")))
    worktree = Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9po.worktrees/t"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # a UTF-8 terminal's strict stdout, not the C locale's

    def mux(*args: str) -> subprocess.CompletedProcess[str]:
        proc = run_raw(*args, cwd=repo, env=env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        return proc

    mux("new", "t", "-a", "fake")
    wait_until(lambda: json.loads(mux("ls", "--json").stdout)[0]["reason"] != "checking out")
    assert json.loads(mux("ls", "--json").stdout)[0]["worktree"] == str(worktree)
    mux("status-line")
    mux("send", "t", "hi")
    mux("rm", "--force", "t")
    assert not worktree.exists() and "refs/mux/recovery/t/" in git(repo, "for-each-ref")


# ---------------------------------------------------------------------------------------------- item 18


@pytest.mark.parametrize(
    "args",
    [("new", "other", "-a", "fake"), ("rm", "t"), ("rm", "--force", "t"), ("merge", "t"),
     ("send", "t", "hi", "--when-idle"), ("new", "other", "-a", "claude-like")],
    ids=["new", "rm", "rm-force", "merge", "send-when-idle", "new-with-hooks"],
)  # fmt: skip
def test_a_read_only_state_dir_refuses_in_one_line_and_changes_nothing(
    repo: Path, tmux_socket: str, args: tuple[str, ...]
) -> None:
    # A profile with hooks: their settings file is written into the state dir before anything else.
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    (agents / "claude-like.toml").write_text('hooks = "claude"\n' + (agents / "fake.toml").read_text())
    start(repo, "t")
    before = disk_state(repo, tmux_socket)
    with read_only(repo / ".git" / "mux"):
        proc = run_raw(*args, cwd=repo)
        assert_one_line_error(proc, "cannot")
        assert disk_state(repo, tmux_socket) == before


@pytest.mark.parametrize("rebase", [False, True], ids=["merge", "rebase"])
def test_sync_with_a_read_only_state_dir_refuses_before_it_writes_anything(
    repo: Path, tmux_socket: str, rebase: bool
) -> None:
    start(repo, "t")
    (repo / "base.txt").write_text("the base moved on\n")
    git(repo, "add", "base.txt")
    git(repo, "commit", "-q", "-m", "base moves")
    before = disk_state(repo, tmux_socket)
    with read_only(repo / ".git" / "mux"):
        assert_one_line_error(run_raw("sync", "t", *(["--rebase"] if rebase else []), cwd=repo), "cannot")
        assert disk_state(repo, tmux_socket) == before  # no recovery ref either


def write_lines(count: int) -> tuple[str, dict[str, str]]:
    """A prompt of `count` fake-agent `write` lines of 3,000 characters each, and the files it makes."""
    files = {f"f{i}.txt": f"{i:04d}" * 750 for i in range(count)}
    return "\n".join(f"write {name} {text}" for name, text in files.items()), files


@pytest.mark.parametrize("count", [7, 66], ids=["20KB", "200KB"])
def test_a_long_prompt_reaches_the_agent_intact_and_mux_says_nothing_different(
    repo: Path, tmp_path: Path, count: int
) -> None:
    # The fake profile passes the prompt as an argument, which tmux (16 KB) and the kernel (128 KB) cannot hold.
    text, files = write_lines(count)
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(text)
    proc = run_mux("new", "long", "-a", "fake", "--prompt-file", str(prompt_file), cwd=repo, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("long: fake in ")
    worktree = Path(mux_ls(repo)["long"]["worktree"])

    def arrived() -> bool:
        return all(
            (worktree / name).is_file() and (worktree / name).read_text() == text + "\n" for name, text in files.items()
        )

    wait_until(arrived, timeout=30)


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"caf\xe9 au lait\n", ("not UTF-8", "0xe9")), (b"a\x00b\n", ("NUL",))],
    ids=["latin1", "nul"],
)
def test_a_prompt_file_in_latin1_or_with_a_nul_is_refused_in_one_line(
    repo: Path, tmp_path: Path, tmux_socket: str, content: bytes, words: tuple[str, ...]
) -> None:
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_bytes(content)
    before = disk_state(repo, tmux_socket)
    assert_one_line_error(run_raw("new", "t", "-a", "fake", "--prompt-file", str(prompt_file), cwd=repo), *words)
    assert disk_state(repo, tmux_socket) == before


def test_prompts_and_send_text_that_are_not_utf8_are_refused_in_one_line(repo: Path, tmux_socket: str) -> None:
    start(repo, "t")
    latin1 = os.fsdecode(b"caf\xe9")
    before = disk_state(repo, tmux_socket)
    for args in (("new", "u", "-a", "fake", "-p", latin1), ("send", "t", latin1), ("send", "t", latin1, "--when-idle")):
        assert_one_line_error(run_raw(*args, cwd=repo), "not UTF-8", "0xe9")
        assert disk_state(repo, tmux_socket) == before, args


def test_the_monitor_survives_a_queued_prompt_it_cannot_deliver_and_delivers_the_next(repo: Path) -> None:
    worktree = start(repo, "t")
    queue = repo / ".git" / "mux" / "queue"
    queue.mkdir(parents=True, exist_ok=True)
    # As a mux before this check queued it, or a hand edit: a text with a byte that is not UTF-8, then a good one.
    (queue / "t.json").write_bytes(b'["caf\xe9", "caf\\udce9", "write after.txt delivered"]')
    journal = repo / ".git" / "mux" / "journal.jsonl"
    assert wait_until(lambda: (worktree / "after.txt").is_file(), timeout=20)
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    kept = [e for e in entries if e["action"] == "undelivered"]
    assert [e["text"] for e in kept] == ["caf\udce9"] * 2, entries  # reported, and the text is not lost


@pytest.mark.parametrize("days", ["nan", "inf", "1e10", "-1", "-inf"])
def test_gc_refuses_an_age_that_is_no_number_of_days(repo: Path, tmux_socket: str, days: str) -> None:
    start(repo, "t")
    run_mux("rm", "t", cwd=repo)
    before = disk_state(repo, tmux_socket)
    assert_one_line_error(run_raw("gc", "--older-than", days, cwd=repo), "--older-than")
    assert disk_state(repo, tmux_socket) == before


def test_new_refuses_in_one_line_when_a_file_is_where_the_worktree_folder_goes(repo: Path, tmux_socket: str) -> None:
    (repo.parent / "proj.worktrees").write_text("a file, not a folder\n")
    before = disk_state(repo, tmux_socket)
    assert_one_line_error(run_raw("new", "t", "-a", "fake", cwd=repo), "proj.worktrees")
    assert disk_state(repo, tmux_socket) == before
    assert run_mux("ls", cwd=repo).stderr == ""  # no interrupted command left to roll back


@pytest.mark.parametrize("command", ["ls", "new", "doctor"])
def test_a_command_run_from_a_deleted_directory_says_so_in_one_line(tmp_path: Path, command: str) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    argv = [sys.executable, "-m", "muxagent", command] + (["t"] if command == "new" else [])
    proc = subprocess.run(["sh", "-c", script, "sh", str(gone), *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "current directory no longer exists" in (proc.stdout + proc.stderr)
    if command != "doctor":
        assert_one_line_error(proc)


def test_status_line_from_a_deleted_directory_prints_nothing(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    argv = [sys.executable, "-m", "muxagent", "status-line"]
    proc = subprocess.run(["sh", "-c", script, "sh", str(gone), *argv], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
