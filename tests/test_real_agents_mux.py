"""The real Claude Code, Codex and OpenCode CLIs driven through `mux` alone, offline against fake model servers.

tmux keys answer the agents' dialogs, as a user in the task's window would. See tests/realagents/ for how the
agents are installed and pointed at the fake servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import mux_ls, run_mux, wait_until
from realagents import Turn
from realagents.fake_anthropic import FakeAnthropic
from realagents.fake_openai import FakeOpenAI, codex_writes_hello
from realagents.homes import claude_env, codex_env, opencode_env
from realagents.plugin import AgentTmux, RealAgents, press_until


@pytest.fixture(autouse=True)
def screens_on_failure(short_repo: Path) -> Iterator[None]:
    """Print every task's row, hook events and screen after the test: pytest shows it when the test failed (a real
    agent's hang or new dialog is then readable in the CI log)."""
    yield
    proc = run_mux("ls", "--json", cwd=short_repo, check=False)
    for item in json.loads(proc.stdout or "[]"):
        print(f"--- {item['name']}: {item['state']} ({item['reason']})")
        for event in hook_events(short_repo, item["name"]):
            print(f"    {event['ts']:.3f} {event['source']} {event['name']} {event.get('session', '')}")
        print(run_mux("peek", item["name"], cwd=short_repo, check=False).stdout)


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], agents: RealAgents) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", agents.path_env())


def row(repo: Path, name: str) -> dict[str, Any]:
    return mux_ls(repo)[name]


def press(socket: str, window: str, *keys: str) -> None:
    subprocess.run(["tmux", "-L", socket, "send-keys", "-t", window, *keys], check=True)


def hook_events(repo: Path, name: str) -> list[dict[str, Any]]:
    path = repo / ".git" / "mux" / "events" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def turns_of(repo: Path, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(run_mux("log", name, "--json", cwd=repo).stdout)
    return found


def test_claude_working_waiting_approve_idle_then_exit(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url), real_agents)
    worktree = repo.parent / "proj.worktrees" / "cl"
    fake_anthropic.script = [
        Turn.tool_use("Write", {"file_path": str(worktree / "hello.txt"), "content": "hi from claude\n"}, delay=1.5),
        Turn.text("Done: wrote hello.txt.", delay=1.0),
    ]
    run_mux("new", "cl", "-a", "claude", "-p", "write hello.txt", cwd=repo)
    working = wait_until(lambda: (r := row(repo, "cl"))["state"] == "working" and r, timeout=30)
    assert working["reason"].startswith(("hook: ", "screen: esc to interrupt"))
    waiting = wait_until(lambda: (r := row(repo, "cl"))["state"] == "waiting" and r, timeout=30)
    wait_until(lambda: (r := row(repo, "cl"))["reason"] == "hook: PermissionRequest" and r, timeout=5)
    assert not (worktree / "hello.txt").exists()
    press(tmux_socket, waiting["window"], "Enter")  # "❯ 1. Yes" has the focus
    wait_until(lambda: (worktree / "hello.txt").exists(), timeout=30)
    idle = wait_until(lambda: (r := row(repo, "cl"))["state"] == "idle" and r, timeout=30)
    assert idle["reason"] == "hook: Stop"
    assert (idle["dirty_files"], idle["added_lines"]) == (1, 1)
    assert (worktree / "hello.txt").read_text() == "hi from claude\n"
    # Between the answer and the end of the turn the agent was working again (its tool ran).
    names = [e["name"] for e in hook_events(repo, "cl")]
    assert names.index("PostToolUse") > names.index("PermissionRequest")
    # The turn's checkpoint holds the prompt and the model's final text, from the Stop hook (issue 16).
    turn = wait_until(lambda: turns_of(repo, "cl"), timeout=15)[-1]
    assert (turn["prompt"], turn["summary"]) == ("write hello.txt", "Done: wrote hello.txt.")
    run_mux("send", "cl", "/exit", cwd=repo)
    exited = wait_until(lambda: (r := row(repo, "cl"))["exit_status"] is not None and r, timeout=30)
    assert (exited["state"], exited["exit_status"]) == ("exited", 0)


def test_claude_settles_when_the_model_server_dies_mid_turn(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url), real_agents)
    fake_anthropic.script = [Turn.hang("Let me think")]
    run_mux("new", "dies", "-a", "claude", "-p", "think hard", cwd=repo)
    wait_until(lambda: fake_anthropic.hanging, timeout=30)
    # The request can reach the server before the live view has published the prompt's hook event (up to 1 s).
    wait_until(lambda: row(repo, "dies")["state"] == "working", timeout=5)
    fake_anthropic.stop()
    settled = wait_until(lambda: (r := row(repo, "dies"))["state"] in ("idle", "waiting") and r, timeout=30)
    assert settled["state"] == "idle", settled


def test_claude_trust_dialog_in_an_untrusted_repo_is_waiting(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), None, fake_anthropic.url), real_agents)
    run_mux("new", "untrusted", "-a", "claude", cwd=repo)
    waiting = wait_until(lambda: (r := row(repo, "untrusted"))["state"] == "waiting" and r, timeout=30)
    assert waiting["reason"].startswith("trust dialog: ")


def test_codex_working_waiting_on_approval_then_idle_through_notify(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    home = Path(os.environ["HOME"])
    use_env(monkeypatch, codex_env(home, repo, fake_openai.url), real_agents)
    # Codex trusts folders one by one: let mux answer its trust screen for the worktree of a trusted repo.
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "codex.toml").write_text("auto_trust = true\n")
    fake_openai.script = codex_writes_hello()
    worktree = repo.parent / "proj.worktrees" / "co"
    run_mux("new", "co", "-a", "codex", "-p", "write hello.txt", cwd=repo)
    waiting = wait_until(
        lambda: (r := row(repo, "co"))["state"] == "waiting" and "Would you like" in r["reason"] and r, timeout=60
    )
    # The side thread that titles the session reports its turn while the approval is open: still waiting.
    wait_until(lambda: any(e["name"] == "agent-turn-complete" for e in hook_events(repo, "co")), timeout=15)
    assert row(repo, "co")["state"] == "waiting"
    assert not (worktree / "hello.txt").exists()
    press_until(lambda: press(tmux_socket, waiting["window"], "Enter"), (worktree / "hello.txt").exists)
    idle = wait_until(lambda: (r := row(repo, "co"))["state"] == "idle" and r, timeout=30)
    assert idle["reason"] == "hook: agent-turn-complete"
    assert idle["dirty_files"] == 1
    # The turn's checkpoint holds the prompt and the model's final text, from the conversation's notify: not the
    # title thread's, whose notify may be all there is when the screen shows the turn over (issue 16).
    done = ("write hello.txt", "Done: wrote hello.txt.")
    turns = wait_until(lambda: (t := turns_of(repo, "co")) and (t[-1]["prompt"], t[-1]["summary"]) == done and t)
    assert len(turns) == 1


def test_opencode_reaches_idle_through_its_plugin(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    env = opencode_env(
        Path(os.environ["HOME"]), repo, fake_openai.url, extra={"permission": {"bash": "ask"}},
        seed=real_agents.opencode_config_seed,
    )  # fmt: skip
    use_env(monkeypatch, env, real_agents)
    fake_openai.script = [
        Turn.tool_use("bash", {"command": "echo hi > hello.txt", "description": "Write hello.txt"}, delay=1.0),
        Turn.text("Done: wrote hello.txt."),
    ]
    run_mux("new", "oc", "-a", "opencode", cwd=repo)
    wait_until(lambda: row(repo, "oc")["state"] == "idle", timeout=90)
    run_mux("send", "oc", "write hello.txt", cwd=repo)
    waiting = wait_until(lambda: (r := row(repo, "oc"))["state"] == "waiting" and r, timeout=60)
    # The dialog may be on screen a moment before its hook arrives: then the screen says so, after the busy hook.
    assert waiting["reason"] == "hook: permission.asked" or waiting["reason"].startswith("screen: Permission required")
    press(tmux_socket, waiting["window"], "Enter")
    # OpenCode sends `session.idle` and `session.status` idle together, in either order.
    idle_hooks = ("hook: session.idle", "hook: session.status:idle")
    idle = wait_until(lambda: (r := row(repo, "oc"))["reason"] in idle_hooks and r, timeout=90)
    assert idle["state"] == "idle"
    assert (repo.parent / "proj.worktrees" / "oc" / "hello.txt").exists()
    # The turn's checkpoint holds the prompt and the model's final text, from the plugin's session.idle (issue 16).
    done = ("write hello.txt", "Done: wrote hello.txt.")
    turns = wait_until(lambda: (t := turns_of(repo, "oc")) and (t[-1]["prompt"], t[-1]["summary"]) == done and t)
    assert len(turns) == 1


def current_launch(repo: Path, name: str) -> str:
    return str(next(e["launch"] for e in reversed(hook_events(repo, name)) if e["name"] == "spawn"))


def session_of(repo: Path, name: str) -> str:
    return str(next((e["session"] for e in reversed(hook_events(repo, name)) if e.get("session")), ""))


def report_session(repo: Path, name: str, source: str, payload: dict[str, Any], argv_payload: bool = False) -> None:
    """A hook of the task's current launch naming `payload`'s session, as if its agent had moved into that one."""
    env = {**os.environ, "MUX_TASK": name, "MUX_STATE_DIR": str(repo / ".git" / "mux")}
    env["MUX_LAUNCH"] = current_launch(repo, name)
    text = json.dumps(payload)
    argv = [sys.executable, "-m", "muxagent", "_hook", source, *([text] if argv_payload else [])]
    subprocess.run(argv, input=None if argv_payload else text, text=True, env=env, check=True)


def converse_aside(agent_tmux: AgentTmux, argv: list[str], worktree: Path, server: FakeAnthropic | FakeOpenAI) -> None:
    """The user runs the agent by hand in the task's worktree for a turn: that directory's latest conversation is
    then not the task's."""
    seen = len(server.model_requests())
    pane = agent_tmux.start(argv, worktree, dict(os.environ))
    wait_until(lambda: any("zebra" in r.text() for r in server.model_requests()[seen:]), timeout=60)
    agent_tmux.tmux("kill-pane", "-t", pane)


def quit_restart_and_ask(
    repo: Path, server: FakeAnthropic | FakeOpenAI, quit: str, question: str, meanwhile: Callable[[], object]
) -> tuple[str, str]:
    """Quit task `keep`'s agent, run `meanwhile`, `mux restart` it and ask `question`: (what restart said on
    stderr, what the agent then sent the model)."""
    run_mux("send", "keep", quit, cwd=repo)
    wait_until(lambda: row(repo, "keep")["state"] == "exited", timeout=30)
    meanwhile()
    asked = len(server.model_requests())
    proc = run_mux("restart", "keep", cwd=repo)
    wait_until(lambda: row(repo, "keep")["state"] == "idle", timeout=90)
    run_mux("send", "keep", question, cwd=repo)
    return proc.stderr, asked_after(server, asked)


def asked_after(server: FakeAnthropic | FakeOpenAI, count: int) -> str:
    """The text of the first conversation request after the first `count`: what the agent sent the model."""
    return wait_until(lambda: len(r := server.model_requests()) > count and r[count].text(), timeout=60)


def test_claude_restart_resumes_its_own_conversation_never_another_worktrees(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, agent_tmux: AgentTmux,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url), real_agents)
    fake_anthropic.script = [Turn.text("Noted: walrus."), Turn.text("Noted: narwhal.")]
    run_mux("new", "keep", "-a", "claude", "-p", "remember the word walrus", cwd=repo)
    wait_until(lambda: row(repo, "keep")["reason"] == "hook: Stop", timeout=60)
    run_mux("new", "other", "-a", "claude", "-p", "remember the word narwhal", cwd=repo)
    wait_until(lambda: row(repo, "other")["reason"] == "hook: Stop", timeout=60)
    mine, theirs = session_of(repo, "keep"), session_of(repo, "other")
    assert mine and theirs and mine != theirs
    # Once the agent quit, a newer conversation in its worktree, had outside mux: the one `--continue` would take.
    worktree = repo.parent / "proj.worktrees" / "keep"
    fake_anthropic.script = [Turn.text("It was walrus.")]
    by_hand = [str(real_agents.claude), "say zebra"]
    aside = partial(converse_aside, agent_tmux, by_hand, worktree, fake_anthropic)
    said, sent = quit_restart_and_ask(repo, fake_anthropic, "/exit", "which word was it?", aside)
    # The same conversation: the earlier turn goes to the model with the new question.
    assert said == "" and "remember the word walrus" in sent and "which word was it?" in sent
    assert "zebra" not in sent and session_of(repo, "keep") == mine
    # Its last hook named the other task's conversation (as if Claude's /resume had switched to another project's).
    payload = {"hook_event_name": "SessionEnd", "session_id": theirs}
    fake_anthropic.script = [Turn.text("Still walrus.")]
    moved = partial(report_session, repo, "keep", "claude", payload)
    said, sent = quit_restart_and_ask(repo, fake_anthropic, "/exit", "and now?", moved)
    other_worktree = repo.parent / "proj.worktrees" / "other"
    assert said == f"mux: keep: session {theirs} is of {other_worktree}: resuming with `--continue` instead\n"
    assert "narwhal" not in sent and "remember the word walrus" in sent


def test_codex_restart_resumes_its_own_conversation_never_another_worktrees(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, agent_tmux: AgentTmux,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, codex_env(Path(os.environ["HOME"]), repo, fake_openai.url), real_agents)
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "codex.toml").write_text("auto_trust = true\n")
    fake_openai.script = [Turn.text("Noted: walrus."), Turn.text("Noted: narwhal.")]
    idle = "hook: agent-turn-complete"
    run_mux("new", "keep", "-a", "codex", "-p", "remember the word walrus", cwd=repo)
    wait_until(lambda: (r := row(repo, "keep"))["reason"] == idle and r["state"] == "idle", timeout=90)
    run_mux("new", "other", "-a", "codex", "-p", "remember the word narwhal", cwd=repo)
    wait_until(lambda: (r := row(repo, "other"))["reason"] == idle and r["state"] == "idle", timeout=90)
    # Its turn and its title thread's both notify, in either order; only the conversation has a rollout file.
    sessions = Path(os.environ["HOME"], ".codex", "sessions")
    theirs = next(e["session"] for e in hook_events(repo, "other") if any(sessions.rglob(f"*{e.get('session')}.jsonl")))
    # Once the agent quit, a newer conversation in its worktree, had outside mux: the one `resume --last` would take.
    worktree = repo.parent / "proj.worktrees" / "keep"
    with (Path(os.environ["CODEX_HOME"]) / "config.toml").open("a") as config:  # trusted, as by the user by hand
        config.write(f'\n[projects."{worktree}"]\ntrust_level = "trusted"\n')
    fake_openai.script = [Turn.text("It was walrus.")]
    by_hand = [str(real_agents.codex), "say zebra"]
    aside = partial(converse_aside, agent_tmux, by_hand, worktree, fake_openai)
    said, sent = quit_restart_and_ask(repo, fake_openai, "/quit", "which word was it?", aside)
    assert said == "" and "remember the word walrus" in sent and "which word was it?" in sent
    assert "zebra" not in sent
    payload = {"type": "agent-turn-complete", "thread-id": theirs}
    fake_openai.script = [Turn.text("Still walrus.")]
    moved = partial(report_session, repo, "keep", "codex", payload, argv_payload=True)
    said, sent = quit_restart_and_ask(repo, fake_openai, "/quit", "and now?", moved)
    other_worktree = repo.parent / "proj.worktrees" / "other"
    assert said == f"mux: keep: session {theirs} is of {other_worktree}: resuming with `resume --last` instead\n"
    assert "narwhal" not in sent and "remember the word walrus" in sent
