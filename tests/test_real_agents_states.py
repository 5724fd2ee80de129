"""States that hold: the real agents interrupted mid-turn settle in idle and stay there, a granted permission is
working again. Offline against the fake model servers (see tests/realagents/); `mux ls --json` sampled at 4 Hz
as a watching user (or the monitor) would see it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_mux, wait_until
from realagents import Turn
from realagents.fake_anthropic import FakeAnthropic
from realagents.fake_openai import FakeOpenAI
from realagents.homes import claude_env, codex_env, opencode_env
from realagents.plugin import RealAgents
from test_real_agents_mux import press, row, screens_on_failure, use_env

__all__ = ["screens_on_failure"]  # the autouse fixture that prints every task's screen after a failed test

# The shipped profiles' idle_after, plus one second: the issue's bound for a turn that ends without a hook.
SETTLE = 3.0 + 1.0
# One `mux ls` and one tmux key on a busy two-core machine: what a poll may add to the bound.
POLL_SLACK = 1.5
# The bound for an interrupted turn: idle, with no flap, for 20 s after it settles (Claude's idle screen
# once brought its old UserPromptSubmit back a few seconds after each redraw).
INTERRUPT_HOLD = 20.0
# How long OpenCode's "esc again to interrupt" is sampled after one Esc: well inside the ~5 s it waits for the
# second, so the second still confirms.
ONE_ESC_HOLD = 2.0
# Every other state is held past each timer of the classifier twice over (idle_after since the last hook, or
# since the pane printed): a state that a timer would flip has flipped by then.
HOLD = 2 * SETTLE


def states_over(repo: Path, name: str, seconds: float) -> list[tuple[float, str, str]]:
    """(time, state, reason) of `name` sampled at 4 Hz for `seconds`."""
    start = time.monotonic()
    samples = []
    while (now := time.monotonic() - start) < seconds:
        found = row(repo, name)
        samples.append((round(now, 2), found["state"], found["reason"]))
        time.sleep(max(0.0, 0.25 - (time.monotonic() - start - now)))
    return samples


def holds(repo: Path, name: str, state: str, seconds: float = HOLD) -> None:
    samples = states_over(repo, name, seconds)
    assert {s for _, s, _ in samples} == {state}, [sample for sample in samples if sample[1] != state]


def settles_and_holds(
    repo: Path, name: str, state: str, what: str, within: float = SETTLE, hold: float = HOLD, reason: str = ""
) -> dict[str, Any]:
    """Wait for `state` (and `reason`, if given), printing how long it took for the report; check it holds."""
    start = time.monotonic()
    found: dict[str, Any] = wait_until(
        lambda: (r := row(repo, name))["state"] == state and reason in r["reason"] and r, timeout=within + POLL_SLACK
    )
    print(f"{what} -> {state} in {time.monotonic() - start:.2f} s ({found['reason']})")
    holds(repo, name, state, hold)
    return found


def use_codex(monkeypatch: pytest.MonkeyPatch, repo: Path, server: FakeOpenAI, agents: RealAgents) -> None:
    """Codex against `server`, mux answering its trust screen for the worktree of the trusted repo."""
    use_env(monkeypatch, codex_env(Path(os.environ["HOME"]), repo, server.url), agents)
    profiles = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "codex.toml").write_text("auto_trust = true\n")


def test_claude_turn_interrupted_by_esc_stays_idle(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Claude fires no hook when Esc stops its turn: its old UserPromptSubmit once came back on every redraw. Its
    own status file (~/.claude/sessions/<pid>.json) says idle at once, and that is what mux shows."""
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url), real_agents)
    fake_anthropic.script = [Turn.hang("Let me think")]
    run_mux("new", "esc", "-a", "claude", "-p", "think hard", cwd=repo)
    wait_until(lambda: fake_anthropic.hanging, timeout=30)
    working = wait_until(lambda: (r := row(repo, "esc"))["reason"] == "hook: UserPromptSubmit" and r, timeout=10)
    # Past the hook's gate first: the Esc itself must be what is seen, not the hook growing old.
    holds(repo, "esc", "working", SETTLE)
    press(tmux_socket, working["window"], "Escape")
    idle = settles_and_holds(repo, "esc", "idle", "Esc", hold=INTERRUPT_HOLD)
    assert idle["reason"] == "hook: session status idle"


def test_claude_permission_granted_is_working_then_esc_in_the_tool_is_idle(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url), real_agents)
    # (Claude refuses a plain long `sleep` before asking.)
    fake_anthropic.script = [Turn.tool_use("Bash", {"command": "tail -f /dev/null", "description": "Wait a while"})]
    run_mux("new", "tool", "-a", "claude", "-p", "wait a while", cwd=repo)
    waiting = wait_until(lambda: (r := row(repo, "tool"))["reason"] == "hook: PermissionRequest" and r, timeout=30)
    press(tmux_socket, waiting["window"], "Enter")  # "❯ 1. Yes" has the focus
    # The tool then runs with no hook at all: the busy screen keeps it working, long past the hook's gate.
    settles_and_holds(repo, "tool", "working", "permission granted")
    press(tmux_socket, waiting["window"], "Escape")
    settles_and_holds(repo, "tool", "idle", "Esc in a tool")


def test_codex_turn_interrupted_by_esc_stays_idle(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    use_codex(monkeypatch, repo, fake_openai, real_agents)
    # A reply held back before its first byte: Codex drops a stream that stalls midway ("error decoding response").
    fake_openai.script = [Turn.text("Thought it over.", delay=120)]
    run_mux("new", "cx", "-a", "codex", "-p", "think hard", cwd=repo)
    working = wait_until(lambda: (r := row(repo, "cx"))["reason"] == "screen: esc to interrupt" and r, timeout=60)
    holds(repo, "cx", "working", SETTLE)
    press(tmux_socket, working["window"], "Escape")
    settles_and_holds(repo, "cx", "idle", "Esc", hold=INTERRUPT_HOLD)


def test_opencode_turn_interrupted_by_esc_stays_idle(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, tmux_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = short_repo
    env = opencode_env(Path(os.environ["HOME"]), repo, fake_openai.url, seed=real_agents.opencode_config_seed)
    use_env(monkeypatch, env, real_agents)
    fake_openai.script = [Turn.text("Thought it over.", delay=120)]
    run_mux("new", "oc", "-a", "opencode", cwd=repo)
    wait_until(lambda: row(repo, "oc")["state"] == "idle", timeout=90)
    run_mux("send", "oc", "think hard", cwd=repo)
    working = wait_until(lambda: (r := row(repo, "oc"))["state"] == "working" and r, timeout=30)
    holds(repo, "oc", "working", SETTLE)
    # OpenCode asks for a second Esc to confirm the interrupt, for about 5 s, its spinner stopped meanwhile: the
    # turn goes on, so one Esc is still working (it read as idle and flapped, the hook being past its gate).
    press(tmux_socket, working["window"], "Escape")
    wait_until(lambda: "again" in run_mux("peek", "oc", cwd=repo).stdout, timeout=5)
    holds(repo, "oc", "working", ONE_ESC_HOLD)
    press(tmux_socket, working["window"], "Escape")
    # OpenCode's own session.idle says so within a second here; its footer (`ctrl+p commands`) within idle_after.
    settles_and_holds(repo, "oc", "idle", "Esc Esc", hold=INTERRUPT_HOLD)


# One launch, two failed turns: the second starts from the first's idle, and its own reason (or its working
# screen, for Codex) shows it is that turn, not the first one's idle, that is seen.
FAILURES = [(429, "rate_limit"), (500, "server_error")]


def test_claude_failed_requests_end_the_turn_in_idle_saying_why(
    real_agents: RealAgents, fake_anthropic: FakeAnthropic, short_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    repo = short_repo
    use_env(monkeypatch, claude_env(Path(os.environ["HOME"]), repo, fake_anthropic.url), real_agents)
    fake_anthropic.script = [Turn.error(status, "fake failure") for status, _ in FAILURES]
    run_mux("new", "fail", "-a", "claude", "-p", "try", cwd=repo)
    for count, (status, error) in enumerate(FAILURES, 1):
        if count > 1:
            run_mux("send", "fail", "try again", cwd=repo)
        wait_until(lambda: len(fake_anthropic.model_requests()) >= count, timeout=30)  # noqa: B023 (called at once)
        settles_and_holds(repo, "fail", "idle", f"HTTP {status}", reason=f"hook: StopFailure:{error}")
        assert row(repo, "fail")["reason"] == f"hook: StopFailure:{error}"


def test_codex_failed_requests_end_the_turn_in_idle(
    real_agents: RealAgents, fake_openai: FakeOpenAI, short_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """Codex reports no failed turn to its notify program: its idle composer ends it."""
    repo = short_repo
    use_codex(monkeypatch, repo, fake_openai, real_agents)
    # Each failure held back long enough that the turn's working screen is seen before its end on a loaded machine
    # too (held 2 s, a suite run on two cores missed it).
    fake_openai.script = [Turn.error(status, "fake failure", delay=5.0) for status, _ in FAILURES]
    run_mux("new", "cxfail", "-a", "codex", "-p", "try", cwd=repo)
    for count, (status, _) in enumerate(FAILURES, 1):
        if count > 1:
            run_mux("send", "cxfail", "try again", cwd=repo)
        wait_until(lambda: len(fake_openai.model_requests()) >= count, timeout=60)  # noqa: B023 (called at once)
        wait_until(lambda: row(repo, "cxfail")["state"] == "working", timeout=10)
        # From the failure on: the side thread that titles the session may report its own turn done before it.
        wait_until(lambda: fake_openai.model_requests()[count - 1].ended, timeout=10)  # noqa: B023 (called at once)
        settles_and_holds(repo, "cxfail", "idle", f"HTTP {status}")
