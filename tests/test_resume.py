"""`mux restart` resumes the exact conversation the agent had: the session its hooks recorded, only when the
agent's own records place it in the task's worktree and it came from the task's own launch; else the profile's
`resume_args`, said in one line.

The stand-in agent keeps its conversations as Claude Code does (tests/fake_agent.py); the real Claude Code and
Codex are in tests/test_real_agents_mux.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import mux_ls, profile_with, run_mux, wait_until

from muxagent.status.hooks import session_of
from muxagent.status.sessions import resume


@pytest.fixture
def claude_like(fake_profile: Path) -> str:
    """The stand-in agent wired like Claude Code: hooks through `--settings`, `--continue` as its resume_args."""
    profile_with(fake_profile, fake_profile.parent / "claudelike.toml", hooks="claude", resume_args=["--continue"])
    return "claudelike"


def screen(repo: Path, name: str) -> str:
    return run_mux("peek", name, cwd=repo).stdout


def events(repo: Path, name: str) -> list[dict[str, object]]:
    path = repo / ".git" / "mux" / "events" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def recorded_session(repo: Path, name: str) -> str:
    return wait_until(lambda: next((str(e["session"]) for e in reversed(events(repo, name)) if "session" in e), ""))


def transcript(session: str) -> Path:
    """Where the stand-in agent (as Claude Code) keeps the conversation `session`."""
    return wait_until(lambda: next(Path(os.environ["HOME"], ".claude", "projects").glob(f"*/{session}.jsonl"), None))


def add_conversation(beside: str, worktree: Path, text: str) -> str:
    """A conversation of `worktree` written as the agent writes one, next to the conversation `beside`; its id."""
    session = str(uuid.uuid4())
    (transcript(beside).parent / f"{session}.jsonl").write_text(json.dumps({"cwd": str(worktree), "text": text}) + "\n")
    return session


def exit_agent(repo: Path, name: str) -> None:
    run_mux("send", name, "exit 0", cwd=repo)
    wait_until(lambda: mux_ls(repo)[name]["exit_status"] == 0)


def test_restart_resumes_the_session_the_hooks_recorded(repo: Path, claude_like: str) -> None:
    run_mux("new", "talk", "-a", claude_like, "-p", "remember the word walrus", cwd=repo)
    session = recorded_session(repo, "talk")
    # A newer conversation in the same worktree: `--continue` would take that one, the recorded id does not.
    worktree = repo.parent / "proj.worktrees" / "talk"
    add_conversation(session, worktree, "other talk")
    exit_agent(repo, "talk")
    proc = run_mux("restart", "talk", cwd=repo)
    assert proc.stderr == ""
    shown = wait_until(lambda: (s := screen(repo, "talk")) and f"resumed session {session}" in s and s)
    assert "earlier: remember the word walrus" in shown and "other talk" not in shown


def test_without_a_recorded_session_restart_falls_back_to_resume_args_and_says_so(repo: Path, claude_like: str) -> None:
    run_mux("new", "fresh", "-a", claude_like, "-p", "hello", cwd=repo)
    session = recorded_session(repo, "fresh")
    exit_agent(repo, "fresh")
    # The agent's own record of the conversation is gone: resuming the id would fail, so it is not tried.
    transcript(session).unlink()
    proc = run_mux("restart", "fresh", cwd=repo)
    assert proc.stderr == f"mux: fresh: session {session} is not on disk: resuming with `--continue` instead\n"
    wait_until(lambda: "fake>" in screen(repo, "fresh"))
    assert "resumed session" not in screen(repo, "fresh")


def test_a_session_of_another_worktree_is_never_resumed(repo: Path, claude_like: str) -> None:
    run_mux("new", "mine", "-a", claude_like, "-p", "my own words", cwd=repo)
    run_mux("new", "theirs", "-a", claude_like, "-p", "their secret", cwd=repo)
    mine, theirs = recorded_session(repo, "mine"), recorded_session(repo, "theirs")
    # Inside its task the agent switched to the other task's conversation (Claude's /resume lists other projects').
    run_mux("send", "mine", f"resume {theirs}", cwd=repo)
    wait_until(lambda: recorded_session(repo, "mine") == theirs)
    exit_agent(repo, "mine")
    proc = run_mux("restart", "mine", cwd=repo)
    elsewhere = repo.parent / "proj.worktrees" / "theirs"
    assert proc.stderr == f"mux: mine: session {theirs} is of {elsewhere}: resuming with `--continue` instead\n"
    shown = wait_until(lambda: (s := screen(repo, "mine")) and "continued session" in s and s)
    assert f"continued session {mine}" in shown and "their secret" not in shown


def test_a_session_named_by_another_launch_is_never_resumed(repo: Path, claude_like: str) -> None:
    run_mux("new", "own", "-a", claude_like, "-p", "the task's talk", cwd=repo)
    session = recorded_session(repo, "own")
    exit_agent(repo, "own")
    # A hook of an agent the task did not launch (a stale one, or one started by hand in the pane with the
    # task's variables but not its launch id), naming a later conversation of the same worktree.
    worktree = repo.parent / "proj.worktrees" / "own"
    stray = add_conversation(session, worktree, "not the task's")
    env = {**os.environ, "MUX_TASK": "own", "MUX_STATE_DIR": str(repo / ".git" / "mux"), "MUX_LAUNCH": "0" * 16}
    payload = json.dumps({"hook_event_name": "Stop", "session_id": stray})
    subprocess.run([sys.executable, "-m", "muxagent", "_hook", "claude"], input=payload, text=True, env=env, check=True)
    assert any(e.get("session") == stray for e in events(repo, "own"))
    run_mux("restart", "own", cwd=repo)
    shown = wait_until(lambda: (s := screen(repo, "own")) and "resumed session" in s and s)
    assert f"resumed session {session}" in shown and "not the task's" not in shown


def test_restore_resumes_the_removed_tasks_own_conversation(repo: Path, claude_like: str) -> None:
    """`mux rm` drops the task's hook events; the recovery ref's record keeps the conversation ids instead."""
    run_mux("new", "gone", "-a", claude_like, "-p", "remember the word otter", cwd=repo)
    session = recorded_session(repo, "gone")
    # A newer conversation of the same directory: `--continue` would take that one, the recorded id does not.
    worktree = repo.parent / "proj.worktrees" / "gone"
    add_conversation(session, worktree, "a later talk")
    run_mux("rm", "--force", "gone", cwd=repo)
    proc = run_mux("restore", "gone", cwd=repo)
    assert proc.stderr == ""
    shown = wait_until(lambda: (s := screen(repo, "gone")) and "session" in s and s)
    assert f"resumed session {session}" in shown and "earlier: remember the word otter" in shown
    assert "a later talk" not in shown


def test_restore_never_resumes_another_tasks_conversation(repo: Path, claude_like: str) -> None:
    run_mux("new", "mine", "-a", claude_like, "-p", "my own words", cwd=repo)
    run_mux("new", "theirs", "-a", claude_like, "-p", "their secret", cwd=repo)
    mine, theirs = recorded_session(repo, "mine"), recorded_session(repo, "theirs")
    run_mux("send", "mine", f"resume {theirs}", cwd=repo)
    wait_until(lambda: recorded_session(repo, "mine") == theirs)
    run_mux("rm", "--force", "mine", cwd=repo)
    proc = run_mux("restore", "mine", cwd=repo)
    elsewhere = repo.parent / "proj.worktrees" / "theirs"
    assert proc.stderr == f"mux: mine: session {theirs} is of {elsewhere}: resuming with `--continue` instead\n"
    shown = wait_until(lambda: (s := screen(repo, "mine")) and "continued session" in s and s)
    assert f"continued session {mine}" in shown and "their secret" not in shown


@pytest.mark.parametrize("session", ["../../etc/passwd", "*", "--help", "a b", ""])
def test_a_session_id_that_is_no_id_is_never_put_on_the_command_line(session: str, tmp_path: Path) -> None:
    found = resume("claude", [session], tmp_path, {"HOME": str(tmp_path)}, ("--continue",))
    assert found.args == ("--continue",) and found.note == "no session recorded: resuming with `--continue` instead"


@pytest.mark.parametrize(
    ("source", "payload", "session"),
    [
        (
            "claude",
            {"hook_event_name": "Stop", "session_id": "6c3b0f7e-1d2a-4c5b-9e8f-0a1b2c3d4e5f"},
            "6c3b0f7e-1d2a-4c5b-9e8f-0a1b2c3d4e5f",
        ),
        ("codex", {"type": "agent-turn-complete", "thread-id": "019a-77"}, "019a-77"),
        ("opencode", {"type": "session.idle", "properties": {"sessionID": "ses_4f2a"}}, "ses_4f2a"),
        ("claude", {"hook_event_name": "Stop", "session_id": "../../x"}, ""),
        ("codex", {"type": "agent-turn-complete", "thread-id": 7}, ""),
        ("gemini", {"hook_event_name": "AfterAgent", "session_id": "abc"}, ""),
    ],
)
def test_the_hook_takes_each_agents_own_session_id(source: str, payload: object, session: str) -> None:
    assert session_of(source, payload) == session


def test_an_opencode_session_is_resumed_only_when_its_database_places_it_in_the_worktree(tmp_path: Path) -> None:
    # The `session` table as OpenCode 1.18.33 keeps it in $XDG_DATA_HOME/opencode/opencode.db (its other columns
    # left out); a sub-agent's session has a parent.
    worktree, elsewhere = tmp_path / "wt", tmp_path / "other"
    database = tmp_path / "data" / "opencode" / "opencode.db"
    database.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE session (id TEXT PRIMARY KEY, directory TEXT NOT NULL, parent_id TEXT)")
        rows = [
            ("ses_own", str(worktree), None),
            ("ses_child", str(worktree), "ses_own"),
            ("ses_far", str(elsewhere), None),
        ]
        db.executemany("INSERT INTO session VALUES (?, ?, ?)", rows)
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    fallback = ("--continue",)
    assert resume("opencode", ["ses_child", "ses_own"], worktree, env, fallback).args == ("--session", "ses_own")
    refused = resume("opencode", ["ses_far", "ses_own"], worktree, env, fallback)
    assert (
        refused.args == fallback
        and refused.note == f"session ses_far is of {elsewhere}: resuming with `--continue` instead"
    )
