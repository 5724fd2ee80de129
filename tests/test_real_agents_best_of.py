"""Best of N with real agents (issue 15): one prompt to Claude Code and Codex, compared, the winner kept, the loser
restorable, and a conflict handed to a real Claude Code as a resolver sub-task.

Both agents run offline against fake model servers (tests/realagents/), each told by its script what to write; one
test walks the whole path, so the agents start once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git, mux_ls, run_mux, wait_until, write_toml
from realagents import Turn
from realagents.fake_anthropic import FakeAnthropic
from realagents.fake_openai import FakeOpenAI
from realagents.homes import claude_env, codex_env
from realagents.plugin import RealAgents


@pytest.fixture(autouse=True)
def screens_on_failure(short_repo: Path, fake_anthropic: FakeAnthropic) -> Iterator[None]:
    """Every task's row and screen after the test, and what Claude's tools gave back (a failed `git commit` says
    why only there): pytest shows them when it failed."""
    yield
    proc = run_mux("ls", "--json", cwd=short_repo, check=False)
    for item in json.loads(proc.stdout or "[]"):
        print(f"--- {item['name']}: {item['state']} ({item['reason']})")
        print(run_mux("peek", item["name"], cwd=short_repo, check=False).stdout)
    for request in fake_anthropic.model_requests():
        for message in request.body.get("messages", []) if isinstance(request.body, dict) else []:
            for block in message.get("content", []) if isinstance(message.get("content"), list) else []:
                if block.get("type") == "tool_result":
                    print(f"--- tool result (error: {block.get('is_error', False)}): {block.get('content')}")


def idle(repo: Path, name: str, timeout: float = 90) -> None:
    wait_until(lambda: (row := mux_ls(repo).get(name)) is not None and row["state"] == "idle", timeout=timeout)


# Strict since 2026-12-06. It failed 2 of 9 runs on 2026-12-02 (once the resolver's `git commit --no-edit` through
# Claude's Bash tool exited non-zero), then 1 of 5 on 2026-12-03: the resolver's notice typed into the idle Codex
# started a turn there, and `mux merge best-codex` refused it as working (fixed since: a resolver's states go to the
# inbox only). Since then it passed every CI run and 15 of 15 runs here; the commit failure was not seen again. On a
# failure the fixture prints what Claude's tools gave back, which says why a commit failed.
@pytest.mark.timeout(300)
def test_claude_and_codex_on_one_prompt_compared_the_winner_kept_and_a_conflict_resolved_by_claude(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI, short_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo, home = short_repo, Path(os.environ["HOME"])
    # Claude writes and runs its shell without asking; Codex runs its commands outside the sandbox without asking.
    allow = {"permissions": {"defaultMode": "manual", "allow": ["Write", "Edit", "Bash(sh:*)"]}}
    env = {**claude_env(home, repo, fake_anthropic.url, settings=allow)}
    env.update(codex_env(home, repo, fake_openai.url, approval_policy="never", sandbox_mode="danger-full-access"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", real_agents.path_env())
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    write_toml(agents / "codex.toml", {"auto_trust": True})  # mux answers Codex's trust screen for the worktree
    worktrees = repo.parent / "proj.worktrees"
    fake_anthropic.script = [
        Turn.tool_use("Write", {"file_path": str(worktrees / "best-claude" / "answer.txt"), "content": "claude\n"}),
        Turn.text("Wrote answer.txt."),
    ]
    codex_commits = "printf 'codex\\n' > answer.txt && git add answer.txt && git commit -qm 'Codex answers'"
    fake_openai.script = [Turn.tool_use("exec_command", {"cmd": codex_commits}), Turn.text("Committed answer.txt.")]

    run_mux("new", "best", "-a", "claude", "-a", "codex", "-p", "write answer.txt", cwd=repo)
    rows = mux_ls(repo)
    assert [rows[name]["group"] for name in ("best-claude", "best-codex")] == ["best", "best"]
    wait_until(lambda: (worktrees / "best-claude" / "answer.txt").exists(), timeout=90)
    wait_until(lambda: "Codex answers" in git(repo, "log", "--format=%s", "mux/best-codex"), timeout=90)
    idle(repo, "best-claude")
    idle(repo, "best-codex")

    compared = json.loads(run_mux("compare", "best", "--json", cwd=repo).stdout)
    members = {member["name"]: member for member in compared["members"]}
    assert {name: (m["agent"], m["files"], m["commits"]) for name, m in members.items()} == {
        "best-claude": ("claude", ["answer.txt"], 0),
        "best-codex": ("codex", ["answer.txt"], 1),
    }
    run_mux("keep", "best-claude", cwd=repo)
    assert (repo / "answer.txt").read_text() == "claude\n"
    assert not {"best-claude", "best-codex"} & set(mux_ls(repo))
    run_mux("restore", "best-codex", cwd=repo)
    loser = Path(mux_ls(repo)["best-codex"]["worktree"])
    assert git(loser, "show", "HEAD:answer.txt") == "codex\n"  # the loser's commit is back

    # Both added answer.txt: a conflict, resolved by a real Claude Code in a sub-task of its own.
    resolved = "printf 'claude and codex\\n' > answer.txt && git add answer.txt && git commit -q --no-edit"
    fake_anthropic.script = [
        Turn.tool_use("Bash", {"command": f'sh -c "{resolved}"', "description": "Resolve answer.txt"}),
        Turn.text("Resolved answer.txt."),
    ]
    assert run_mux("merge", "best-codex", cwd=repo, check=False).returncode == 3
    run_mux("merge", "best-codex", "--resolve", "-a", "claude", cwd=repo)
    assert mux_ls(repo)["best-codex-resolve"]["parent"] == "best-codex"
    asked = wait_until(lambda: [r.text() for r in fake_anthropic.model_requests() if "files conflict" in r.text()])
    assert "answer.txt" in asked[0] and "Codex answers" in asked[0]  # the why of each side, from the commit messages
    resolver = Path(mux_ls(repo)["best-codex-resolve"]["worktree"])
    wait_until(lambda: git(resolver, "status", "--porcelain") == "", timeout=90)
    idle(repo, "best-codex-resolve")
    run_mux("merge", "best-codex", cwd=repo)
    assert (repo / "answer.txt").read_text() == "claude and codex\n"
    assert not {"best-codex", "best-codex-resolve"} & set(mux_ls(repo))
