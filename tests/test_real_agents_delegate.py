"""A real agent delegates through mux (issue 12): its model runs `mux new` in its shell tool, gets its turn back at
once, hears from mux when the sub-task is done (a new user turn, typed only while it is idle), and merges it.

The parent is the real Claude Code or Codex, offline against a fake model server; the sub-task is the stand-in
agent (tests/fake_agent.py), which commits a file as soon as it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAKE_AGENT, git, mux_ls, run_mux, wait_until, write_toml
from realagents import FakeModelServer, Turn
from realagents.fake_anthropic import FakeAnthropic
from realagents.fake_openai import FakeOpenAI
from realagents.homes import claude_env, codex_env
from realagents.plugin import RealAgents

NOTICE = "[mux] sub-task sub is idle"


@pytest.fixture(autouse=True)
def screens_on_failure(short_repo: Path) -> Iterator[None]:
    """Every task's row and screen after the test: pytest shows them when it failed."""
    yield
    proc = run_mux("ls", "--json", cwd=short_repo, check=False)
    for item in json.loads(proc.stdout or "[]"):
        print(f"--- {item['name']}: {item['state']} ({item['reason']})")
        print(run_mux("peek", item["name"], cwd=short_repo, check=False).stdout)


CHILD_PROMPT = "commit sub.txt made by the sub-task"


@pytest.fixture
def mux_on_path(tmp_path: Path, real_agents: RealAgents, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mux` as the agents' shell tools find it: this checkout's mux, ahead of the real agents on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "mux"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m muxagent "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{real_agents.path_env()}")


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        if key != "PATH":
            monkeypatch.setenv(key, value)


def requests_with(server: FakeModelServer, text: str) -> list[int]:
    """The indexes of the conversation's requests (side calls left out) whose body contains `text`."""
    turns = [req for req in server.requests if not req.side]
    return [i for i, req in enumerate(turns) if text in req.text()]


def delegation_script(tool: str, run: dict[str, str], merge: dict[str, str]) -> list[Turn]:
    """Start the sub-task, keep working long enough for it to finish meanwhile, end the turn; after the notice,
    merge it and say so."""
    return [
        Turn.tool_use(tool, run, delay=0.5),
        # The sub-task commits and turns idle during this reply: its notice must wait for the end of the turn.
        Turn.text("Started sub; I'll carry on and merge it when mux says it is done.", delay=6.0),
        Turn.tool_use(tool, merge, delay=0.5),
        Turn.text("Merged sub.", delay=0.5),
    ]


def assert_delegated(repo: Path, server: FakeModelServer) -> None:
    child = wait_until(lambda: mux_ls(repo).get("sub"), timeout=60)
    assert child["parent"] == "parent"
    assert mux_ls(repo)["parent"]["children"] == ["sub"]
    noticed = wait_until(lambda: requests_with(server, NOTICE), timeout=60)
    # The notice is a new user turn after the parent's first turn ended (the text reply, the 2nd request).
    assert noticed[0] >= 2, f"the notice reached the model mid-turn: request {noticed[0]}"
    wait_until(lambda: "fake agent: sub.txt" in git(repo, "log", "--format=%s", "mux/parent"), timeout=60)
    worktree = Path(mux_ls(repo)["parent"]["worktree"])
    assert (worktree / "sub.txt").read_text() == "made by the sub-task\n"
    entries = run_mux("inbox", "parent", "--json", cwd=repo).stdout
    assert '"child": "sub"' in entries


def stand_in_profile() -> None:
    """The stand-in agent as the user profile `stand`, idle once its prompt is back for a second."""
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    write_toml(
        agents / "stand.toml",
        {
            "command": [sys.executable, str(FAKE_AGENT)],
            "prompt_args": ["{prompt}"],
            "status": {"idle_after": 1.0, "idle": [r"fake>\s*\Z"]},
        },
    )


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("mux_on_path")
def test_claude_delegates_a_sub_task_hears_it_is_done_and_merges_it(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    home = Path(os.environ["HOME"])
    # Its Bash tool may run mux without asking (bypassPermissions is refused to root, which CI runs as).
    allow = {"permissions": {"defaultMode": "manual", "allow": ["Bash(mux new:*)", "Bash(mux merge:*)"]}}
    use_env(monkeypatch, claude_env(home, repo, fake_anthropic.url, settings=allow))
    stand_in_profile()
    fake_anthropic.script = delegation_script(
        "Bash",
        {"command": f"mux new sub -a stand -p '{CHILD_PROMPT}'", "description": "Start a sub-task"},
        {"command": "mux merge sub", "description": "Merge the sub-task"},
    )
    run_mux("new", "parent", "-a", "claude", "-p", "split the work", cwd=repo)
    assert_delegated(repo, fake_anthropic)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("mux_on_path")
def test_codex_delegates_a_sub_task_hears_it_is_done_and_merges_it(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    home = Path(os.environ["HOME"])
    # Codex runs `mux` outside its sandbox without asking (mux writes into the main checkout's .git).
    env = codex_env(home, repo, fake_openai.url, approval_policy="never", sandbox_mode="danger-full-access")
    use_env(monkeypatch, env)
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    write_toml(agents / "codex.toml", {"auto_trust": True})
    stand_in_profile()
    # Codex runs commands in a login shell, whose /etc/profile resets PATH: the model names mux by its path.
    mux = shutil.which("mux")
    fake_openai.script = delegation_script(
        "exec_command",
        {"cmd": f"{mux} new sub -a stand -p '{CHILD_PROMPT}'"},
        {"cmd": f"{mux} merge sub"},
    )
    run_mux("new", "parent", "-a", "codex", "-p", "split the work", cwd=repo)
    assert_delegated(repo, fake_openai)


def test_the_stand_in_commits_on_its_branch(tmp_path: Path) -> None:
    """The stand-in's `commit` really commits (the delegation tests rely on it)."""
    from conftest import make_repo

    repo = make_repo(tmp_path / "r")
    subprocess.run(
        [sys.executable, str(FAKE_AGENT), "commit", "a.txt", "hi"],
        cwd=repo, input="", text=True, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    assert git(repo, "log", "-1", "--format=%s").strip() == "fake agent: a.txt"
