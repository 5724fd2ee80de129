"""The shipped profiles against real screens captured from the real agents (tests/fixtures/screens/).

A new agent release that changes its UI shows up here as a failing fixture: recapture the screens (see the
README beside them) and adjust the profile's patterns in config/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from muxagent.config import load_profile
from muxagent.model import PaneInfo, State
from muxagent.status.classifier import Observation, classify
from muxagent.status.events import HookEvent

SCREENS = Path(__file__).parent / "fixtures" / "screens"
NOW = 1_000_000.0
EXPECTED = {
    "working": State.WORKING,
    "idle": State.IDLE,
    "waiting": State.WAITING,
    "trust": State.WAITING,
    # After a failed request Claude is back at its prompt: ready for the next one.
    "api": State.IDLE,
    "server": State.IDLE,
}
FIXTURES = sorted(p for p in SCREENS.glob("*.txt") if p.stem.split("-")[1] in EXPECTED)


def test_every_agent_has_fixtures_for_its_main_states() -> None:
    names = {p.stem for p in FIXTURES}
    for agent in ("claude", "codex", "opencode"):
        assert {f"{agent}-idle", f"{agent}-working"} <= names
    assert {"claude-waiting-permission", "codex-waiting-approval", "opencode-waiting-permission"} <= names
    assert {"claude-trust", "codex-trust"} <= names


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_shipped_profile_classifies_the_real_screen(fixture: Path) -> None:
    agent, kind = fixture.stem.split("-")[:2]
    pane = PaneInfo("%1", "@1", "s", False, None, NOW - 30, agent, "t")
    observation = Observation(pane, fixture.read_text(), True, True, NOW - 300, NOW)
    result = classify(observation, load_profile(agent).status)
    assert result.state is EXPECTED[kind], result.reason
    if kind == "trust":
        assert result.reason.startswith("trust dialog: ")


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_an_interrupted_turn_is_idle_though_its_last_hook_said_working(agent: str) -> None:
    """Esc ends the turn with no hook: the idle prompt on the real screen, redrawn just now, outweighs the old one."""
    pane = PaneInfo("%1", "@1", "s", False, None, NOW, agent, "t")
    screen = (SCREENS / f"{agent}-idle-interrupted.txt").read_text()
    events = [HookEvent(NOW - 10, agent, "UserPromptSubmit", State.WORKING)]
    result = classify(Observation(pane, screen, True, True, NOW - 300, NOW, events), load_profile(agent).status)
    assert result.state is State.IDLE, result.reason
    assert result.reason.endswith("(hook UserPromptSubmit 10s old)")
