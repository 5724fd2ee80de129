"""The real Claude Code in mux's bubblewrap sandbox, with its permissions skipped (`mux new --yolo`), offline against
the fake model server on loopback (the sandbox's network is the machine's)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mux_ls, run_mux, wait_until
from realagents import Turn
from realagents.fake_anthropic import FakeAnthropic
from realagents.homes import claude_env
from realagents.plugin import RealAgents

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)


@pytest.fixture(autouse=True)
def screens_on_failure(short_repo: Path) -> Iterator[None]:
    """Each task's row, hook events and screen after the test, which pytest shows when it failed."""
    yield
    for name, item in mux_ls(short_repo).items():
        print(f"--- {name}: {item['state']} ({item['reason']})")
        events = short_repo / ".git" / "mux" / "events" / f"{name}.jsonl"
        print(events.read_text() if events.exists() else "(no hook events)")
        print(run_mux("peek", name, cwd=short_repo, check=False).stdout)


def test_claude_in_the_sandbox_writes_its_worktree_reports_its_turn_and_cannot_write_the_main_checkout(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    for key, value in claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", real_agents.path_env())
    worktree = repo.parent / "proj.worktrees" / "sb"
    fake_anthropic.script = [
        Turn.tool_use("Write", {"file_path": str(repo / "planted.txt"), "content": "from the sandbox\n"}),
        Turn.tool_use("Write", {"file_path": str(worktree / "hello.txt"), "content": "hi from claude\n"}),
        Turn.text("Done: wrote hello.txt."),
    ]

    run_mux("new", "sb", "-a", "claude", "--yolo", "-p", "write hello.txt", cwd=repo)

    wait_until(lambda: (worktree / "hello.txt").exists(), timeout=60)
    # No permission dialog (--yolo), and the Stop hook reached mux from inside the sandbox.
    idle = wait_until(lambda: (r := mux_ls(repo)["sb"])["state"] == "idle" and r, timeout=30)
    assert idle["reason"] == "hook: Stop", idle
    assert (idle["sandbox"], idle["yolo"]) == (True, True)
    assert (worktree / "hello.txt").read_text() == "hi from claude\n"
    assert not (repo / "planted.txt").exists()
    # Claude was told its write to the main checkout failed: the tool result it sent back says so.
    results = [request.text() for request in fake_anthropic.model_requests()]
    # Claude saved its state (a read-only home refused its ~/.claude.json): in its config dir, yours copied first.
    saved = json.loads((Path(os.environ["HOME"]) / ".claude" / ".claude.json").read_text())
    assert saved["numStartups"] > 1 and saved["hasCompletedOnboarding"] is True
    assert any("planted.txt" in text and ("read-only" in text.lower() or "EROFS" in text) for text in results), results
