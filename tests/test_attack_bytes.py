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
from merge_helpers import start

pytestmark = pytest.mark.usefixtures("fake_profile")

# A real Latin-1 name on disk: b"caf\xe9.txt" is no UTF-8, so Python holds it as 'caf\udce9.txt'.
LATIN1_NAME = os.fsdecode(b"caf\xe9.txt")


def run_raw(*args: str | bytes, cwd: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`mux ARGS` with arguments given as bytes where a test needs bytes that are not UTF-8."""
    return subprocess.run(
        [sys.executable, "-m", "muxagent", *args],
        cwd=cwd, capture_output=True, text=True, errors="replace", timeout=60, env=env,
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mux: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


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
    (repo / "base.txt").write_text("the base moved on\n")
    git(repo, "add", "base.txt")
    git(repo, "commit", "-q", "-m", "base moves")
    proc = run_mux("merge", "bytes", cwd=repo)
    assert "merged bytes into main" in proc.stdout and "Traceback" not in proc.stderr
    assert (repo / LATIN1_NAME).read_bytes() == b"agent's work\n"
    assert mux_ls(repo) == {}


def test_sync_hands_a_conflict_on_a_file_whose_name_is_not_utf8_to_the_agent(repo: Path) -> None:
    worktree = start(repo, "bytes")
    for where, text in ((worktree, "the agent's\n"), (repo, "the base's\n")):
        (where / LATIN1_NAME).write_text(text)
        git(where, "add", "-A")
        git(where, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "both add it")
    proc = run_raw("sync", "bytes", cwd=repo)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "caf\ufffd.txt" in proc.stdout  # the name's own bytes, as the terminal shows them
    assert b"<<<<<<<" in (worktree / LATIN1_NAME).read_bytes()
    assert mux_ls(repo)["bytes"]["state"] == "waiting"


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
