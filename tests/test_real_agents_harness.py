"""The real agents run offline against the fake model servers, driven straight in tmux (no mux involved).

Each test walks an agent through the states mux must tell apart and checks the screen of each against the saved
fixture's marker. `python tests/realagents/capture.py` (MUX_UPDATE_SCREENS=1) rewrites `tests/fixtures/screens/`
from these runs (see the README there).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import wait_until
from realagents import Turn, install
from realagents.fake_anthropic import FakeAnthropic
from realagents.fake_openai import FakeOpenAI, codex_writes_hello
from realagents.homes import claude_env, codex_env, opencode_env
from realagents.install import InstallError
from realagents.plugin import AgentTmux, EventRecorder, RealAgents, press_until

SCREENS = Path(__file__).resolve().parent / "fixtures" / "screens"
UPDATE = os.environ.get("MUX_UPDATE_SCREENS") == "1"

# The text each saved screen is kept for: a new agent release that changes it breaks this test first.
MARKERS = {
    "claude-working": r"esc to interrupt",
    "claude-waiting-permission": r"Do you want to create hello\.txt\?",
    "claude-idle": r"\? for shortcuts",
    "claude-trust": r"Yes, I trust this folder",
    "claude-api-error": r"API Error",
    "claude-server-died": r"API Error: Connection (?:lost mid-response|dropped)",
    "claude-exited": r"Resume this session with:",
    "codex-working": r"Working \(\d+s • esc to interrupt\)",
    "codex-waiting-approval": r"Would you like to run the following command\?",
    "codex-idle": r"› Ask Codex to do anything",
    "codex-trust": r"Trust this folder\?",
    "opencode-idle": r"Ask anything",
    "opencode-idle-after-turn": r"Done: wrote hello\.txt\.",
    "opencode-working": r"esc interrupt",
    "opencode-waiting-permission": r"Permission required",
}


def keep(name: str, screen: str, *paths: tuple[Path, str]) -> str:
    """Check the screen against its marker; under MUX_UPDATE_SCREENS=1 save it (tmp paths made stable)."""
    text = screen
    for path, placeholder in paths:
        text = text.replace(str(path), placeholder)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<UUID>", text)
    text = re.sub(r"Pane is dead \(status (-?\d+), [^)]*\)", r"Pane is dead (status \1, <DATE>)", text)
    text = "\n".join(line.rstrip() for line in text.rstrip().splitlines()) + "\n"
    assert re.search(MARKERS[name], text), f"{name}: {MARKERS[name]!r} not in\n{text}"
    if UPDATE:
        agent, state = name.split("-", 1)
        folder = SCREENS / agent / install.PACKAGES[agent][1]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{state}.txt").write_text(text)
    return text


def in_order(seen: list[str], expected: list[str]) -> bool:
    """`expected` appears in `seen` as a subsequence."""
    it = iter(seen)
    return all(name in it for name in expected)


@pytest.fixture
def proj(short_repo: Path) -> Path:
    return short_repo


def test_install_gives_runnable_binaries(real_agents: RealAgents) -> None:
    for name in ("claude", "codex", "opencode"):
        link = real_agents.bin_dir / name
        # Both sides resolved: a `.cache` that is a symlink to a shared cache holds the same binaries.
        assert link.resolve() == getattr(real_agents, name).resolve()
        out = subprocess.run(
            [str(link), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "DISABLE_AUTOUPDATER": "1"},
        )
        assert out.returncode == 0, (name, out.stderr)
        assert re.search(r"\d+\.\d+\.\d+", out.stdout), (name, out.stdout)


def test_an_unreachable_registry_fails_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(InstallError, match=r"^npm registry unreachable: `npm install left-pad@1\.3\.0` exited"):
        install._npm_install(tmp_path / "agents", ["left-pad@1.3.0"])
    monkeypatch.setattr("shutil.which", lambda name: None)  # no npm at all
    with pytest.raises(InstallError, match="npm registry unreachable: `npm` is not on PATH"):
        install._npm_install(tmp_path / "agents", ["left-pad@1.3.0"])


def test_saved_screens_still_carry_their_markers() -> None:
    for name, marker in MARKERS.items():
        agent, state = name.split("-", 1)
        path = SCREENS / agent / install.PACKAGES[agent][1] / f"{state}.txt"
        if path.exists():
            assert re.search(marker, path.read_text()), f"{path} lost {marker!r}"
    assert not list(SCREENS.glob("*/*/*.txt")) or (SCREENS / "README.md").exists()


# -- Claude Code ----------------------------------------------------------------------------------------------------
def test_claude_asks_permission_writes_the_file_and_goes_idle(
    real_agents: RealAgents,
    fake_anthropic: FakeAnthropic,
    agent_tmux: AgentTmux,
    agent_home: Path,
    proj: Path,
    event_recorder: EventRecorder,
) -> None:
    target = proj / "hello.txt"
    fake_anthropic.script = [
        Turn.tool_use("Write", {"file_path": str(target), "content": "hi from claude\n"}, delay=1.5),
        Turn.text("Done: wrote hello.txt.", delay=1.0),
    ]
    env = claude_env(agent_home, proj, fake_anthropic.url)
    argv = [str(real_agents.claude), "--settings", event_recorder.claude_settings(), "write hello.txt"]
    pane = agent_tmux.start(argv, proj, env)
    stable = ((proj, "<REPO>"), (agent_home, "<HOME>"))

    keep("claude-working", agent_tmux.wait_for(pane, MARKERS["claude-working"]), *stable)
    keep("claude-waiting-permission", agent_tmux.wait_for(pane, MARKERS["claude-waiting-permission"]), *stable)
    assert not target.exists()
    wait_until(lambda: "PermissionRequest" in event_recorder.names(), timeout=5)
    answered = time.time()
    agent_tmux.send_keys(pane, "Enter")  # "❯ 1. Yes" has the focus
    wait_until(target.exists, timeout=15)
    assert target.read_text() == "hi from claude\n"
    idle = agent_tmux.wait_for(pane, lambda s: "Done: wrote hello.txt." in s and "esc to interrupt" not in s)
    keep("claude-idle", idle, *stable)
    main = fake_anthropic.model_requests()
    assert len(main) == 2, [r.path for r in fake_anthropic.requests]
    assert "write hello.txt" in main[0].text()
    assert "tool_result" in main[1].text()
    assert agent_tmux.dead(pane) is None
    # Claude 2.1.330 does fire UserPromptSubmit for a prompt given on its command line.
    names = event_recorder.names()
    assert in_order(names, ["UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "Stop"]), names
    assert next(e["at"] for e in event_recorder.events() if e["payload"]["hook_event_name"] == "PostToolUse") > answered


def test_claude_shows_its_trust_dialog_in_an_untrusted_folder(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, agent_tmux: AgentTmux, agent_home: Path, proj: Path
) -> None:
    env = claude_env(agent_home, proj, fake_anthropic.url, trust=False)
    pane = agent_tmux.start([str(real_agents.claude)], proj, env)
    screen = agent_tmux.wait_for(pane, MARKERS["claude-trust"])
    keep("claude-trust", screen, (proj, "<REPO>"), (agent_home, "<HOME>"))
    assert fake_anthropic.model_requests() == []


def test_claude_settles_without_a_model_server_and_exits_on_request(
    real_agents: RealAgents, agent_tmux: AgentTmux, agent_home: Path, proj: Path
) -> None:
    server = FakeAnthropic()
    url = server.url
    server.stop()  # nothing listens on that port any more
    env = claude_env(agent_home, proj, url)
    pane = agent_tmux.start([str(real_agents.claude), "hello"], proj, env)
    stable = ((proj, "<REPO>"), (agent_home, "<HOME>"))
    screen = agent_tmux.wait_for(pane, lambda s: "API Error" in s and "? for shortcuts" in s)
    keep("claude-api-error", screen, *stable)
    agent_tmux.send_text(pane, "/exit")
    wait_until(lambda: agent_tmux.dead(pane) is not None, timeout=15)
    keep("claude-exited", agent_tmux.screen(pane), *stable)
    assert agent_tmux.dead(pane) == 0


def test_claude_settles_when_the_server_dies_mid_turn(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, agent_tmux: AgentTmux, agent_home: Path, proj: Path
) -> None:
    fake_anthropic.script = [Turn.hang("Let me think")]
    env = claude_env(agent_home, proj, fake_anthropic.url)
    pane = agent_tmux.start([str(real_agents.claude), "hello"], proj, env)
    wait_until(lambda: fake_anthropic.hanging, timeout=20)
    agent_tmux.wait_for(pane, "esc to interrupt")
    fake_anthropic.stop()
    screen = agent_tmux.wait_for(pane, lambda s: "esc to interrupt" not in s and "? for shortcuts" in s)
    keep("claude-server-died", screen, (proj, "<REPO>"), (agent_home, "<HOME>"))


# -- Codex ----------------------------------------------------------------------------------------------------------
def test_codex_asks_approval_runs_the_command_and_goes_idle(
    real_agents: RealAgents,
    fake_openai: FakeOpenAI,
    agent_tmux: AgentTmux,
    agent_home: Path,
    proj: Path,
    event_recorder: EventRecorder,
) -> None:
    fake_openai.script = codex_writes_hello()
    env = codex_env(agent_home, proj, fake_openai.url)
    argv = [str(real_agents.codex), "-c", event_recorder.codex_notify(), "write hello.txt"]
    pane = agent_tmux.start(argv, proj, env)
    stable = ((proj, "<REPO>"), (agent_home, "<HOME>"))

    keep("codex-working", agent_tmux.wait_for(pane, MARKERS["codex-working"]), *stable)
    keep("codex-waiting-approval", agent_tmux.wait_for(pane, MARKERS["codex-waiting-approval"]), *stable)
    # notify fires once per turn, and first for the thread-title side thread, which ends while the approval is
    # still open.
    wait_until(lambda: event_recorder.events(), timeout=15)
    assert re.search(MARKERS["codex-waiting-approval"], agent_tmux.screen(pane))
    assert not (proj / "hello.txt").exists()
    # "› 1. Yes, proceed (y)" has the focus.
    press_until(lambda: agent_tmux.send_keys(pane, "Enter"), (proj / "hello.txt").exists)
    assert (proj / "hello.txt").read_text() == "hi from codex\n"
    idle = agent_tmux.wait_for(pane, lambda s: "Done: wrote hello.txt." in s and "esc to interrupt" not in s)
    keep("codex-idle", idle, *stable)
    # The thread-title request rode on the side and did not eat the script.
    assert len(fake_openai.model_requests()) == 2
    assert any(r.side for r in fake_openai.requests)
    wait_until(lambda: len(event_recorder.events()) >= 2, timeout=10)
    title, turn = event_recorder.events()
    assert title["payload"]["type"] == turn["payload"]["type"] == "agent-turn-complete"
    assert title["payload"]["last-assistant-message"] == "Fake title"
    assert turn["payload"]["last-assistant-message"] == "Done: wrote hello.txt."
    assert turn["payload"]["input-messages"] == ["write hello.txt"]
    assert title["payload"]["thread-id"] != turn["payload"]["thread-id"]


def test_codex_shows_its_trust_screen_in_an_untrusted_folder(
    real_agents: RealAgents, fake_openai: FakeOpenAI, agent_tmux: AgentTmux, agent_home: Path, proj: Path
) -> None:
    env = codex_env(agent_home, proj, fake_openai.url, trust=False)
    pane = agent_tmux.start([str(real_agents.codex)], proj, env)
    keep("codex-trust", agent_tmux.wait_for(pane, MARKERS["codex-trust"]), (proj, "<REPO>"), (agent_home, "<HOME>"))


# -- OpenCode -------------------------------------------------------------------------------------------------------
def test_opencode_idles_works_and_asks_permission(
    real_agents: RealAgents,
    fake_openai: FakeOpenAI,
    agent_tmux: AgentTmux,
    agent_home: Path,
    proj: Path,
    event_recorder: EventRecorder,
) -> None:
    fake_openai.script = [
        Turn.tool_use(
            "bash", {"command": "echo hi from opencode > hello.txt", "description": "Write hello.txt"}, delay=2.0
        ),
        Turn.text("Done: wrote hello.txt."),
    ]
    env = opencode_env(
        agent_home,
        proj,
        fake_openai.url,
        plugins=[event_recorder.opencode_plugin()],
        extra={"permission": {"bash": "ask"}},
        seed=real_agents.opencode_config_seed,
    )
    pane = agent_tmux.start([str(real_agents.opencode)], proj, env)
    stable = ((proj, "<REPO>"), (agent_home, "<HOME>"))

    keep("opencode-idle", agent_tmux.wait_for(pane, MARKERS["opencode-idle"], timeout=60), *stable)
    agent_tmux.send_text(pane, "write hello.txt")
    keep("opencode-working", agent_tmux.wait_for(pane, MARKERS["opencode-working"]), *stable)
    keep("opencode-waiting-permission", agent_tmux.wait_for(pane, MARKERS["opencode-waiting-permission"]), *stable)
    agent_tmux.send_keys(pane, "Enter")
    wait_until((proj / "hello.txt").exists, timeout=15)
    done = agent_tmux.wait_for(pane, lambda s: "Done: wrote hello.txt." in s and "esc interrupt" not in s)
    # Back at its prompt after a turn OpenCode shows no "Ask anything": the screen rule must know it idle too.
    keep("opencode-idle-after-turn", done, *stable)
    wait_until(lambda: "session.idle" in event_recorder.names(), timeout=10)
    names = [n for n in event_recorder.names() if n.startswith(("session.status", "session.idle", "permission."))]
    assert in_order(
        names, ["session.status:busy", "permission.asked", "permission.replied", "session.status:idle", "session.idle"]
    ), names
