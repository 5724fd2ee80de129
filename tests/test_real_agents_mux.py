"""The real Claude Code, Codex and OpenCode CLIs driven through `mux` alone, offline against fake model servers.

tmux keys answer the agents' dialogs, as a user in the task's window would. See tests/realagents/ for how the
agents are installed and pointed at the fake servers.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import mux_ls, run_mux, wait_until
from realagents import Turn
from realagents.fake_anthropic import FakeAnthropic
from realagents.fake_openai import FakeOpenAI, codex_writes_hello
from realagents.homes import claude_env, codex_env, opencode_env
from realagents.plugin import RealAgents, press_until


@pytest.fixture(autouse=True)
def screens_on_failure(short_repo: Path) -> Iterator[None]:
    """Print every task's row, hook events and screen after the test: pytest shows it when the test failed (a real
    agent's hang or new dialog is then readable in the CI log)."""
    yield
    proc = run_mux("ls", "--json", cwd=short_repo, check=False)
    for item in json.loads(proc.stdout or "[]"):
        print(f"--- {item['name']}: {item['state']} ({item['reason']})")
        for event in hook_events(short_repo, item["name"]):
            print(f"    {event['ts']:.3f} {event['source']} {event['name']}")
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
    assert row(repo, "dies")["state"] == "working"
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
