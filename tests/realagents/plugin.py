"""pytest fixtures for running the real agents offline in tmux. Load with `pytest_plugins = ["realagents.plugin"]`.

Fixtures:
- `real_agents` (session): `RealAgents` with `.claude`, `.codex`, `.opencode` (native binaries), `.bin_dir`
  (symlinks by those names plus `rg`, to put first on PATH) and `.opencode_config_seed` (for
  `homes.seed_opencode_config`). Installs once per machine; fails (never skips) when npm or
  the registry is unreachable.
- `fake_anthropic`, `fake_openai`: a started `FakeAnthropic` / `FakeOpenAI`, stopped after the test.
- `agent_home`: an empty directory to use as the agent's HOME (separate from the test's pinned HOME).
- `agent_tmux`: an `AgentTmux` on the test's private tmux socket (env MUX_TMUX_SOCKET) with `bin_dir` first on
  the panes' PATH; every pane it started is killed afterwards, with its whole process group.
- `event_recorder`: an `EventRecorder` whose Claude hooks / Codex notify / OpenCode plugin append every event
  the agent reports to one JSON-lines file.
- `short_repo`: a git repo at a short path (`/tmp/mux-XXXX/proj`), so agents that wrap long paths (OpenCode's
  sidebar) print it whole; removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .fake_anthropic import FakeAnthropic
from .fake_openai import FakeOpenAI
from .install import InstallError, ensure_agents, ensure_bin_dir, opencode_config_seed

# What may reach an agent from the test runner's environment; nothing else does (an outer Claude session's
# CLAUDECODE or a real ANTHROPIC_API_KEY would change what the agent shows).
_PASS_ENV = ("PATH", "USER", "LOGNAME", "SHELL", "TZ", "TMPDIR")


@dataclass(frozen=True)
class RealAgents:
    claude: Path
    codex: Path
    opencode: Path
    bin_dir: Path
    opencode_config_seed: Path

    def path_env(self) -> str:
        """PATH with the agents first."""
        return f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"


def load_real_agents() -> RealAgents:
    try:
        binaries = ensure_agents()
        bin_dir = ensure_bin_dir()
    except InstallError as exc:
        pytest.fail(str(exc), pytrace=False)
    return RealAgents(binaries["claude"], binaries["codex"], binaries["opencode"], bin_dir, opencode_config_seed())


@pytest.fixture(scope="session")
def real_agents() -> RealAgents:
    return load_real_agents()


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def short_repo() -> Iterator[Path]:
    from conftest import make_repo  # the suite's helper: same identity and first commit as every other repo

    base = Path(tempfile.mkdtemp(prefix="mux-ra-", dir="/tmp"))
    try:
        yield make_repo(base / "proj")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def agent_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agenthome")


_RECORDER_PY = """\
import json, sys, time
# argv: events-file source [payload]; Claude hooks pass the payload on stdin, Codex notify as the last argument.
path, source = sys.argv[1], sys.argv[2]
raw = sys.argv[3] if len(sys.argv) > 3 else sys.stdin.read()
try:
    payload = json.loads(raw)
except ValueError:
    payload = {"raw": raw}
with open(path, "a") as out:
    out.write(json.dumps({"at": time.time(), "source": source, "payload": payload}) + "\\n")
"""

_RECORDER_JS = """\
import { appendFileSync } from "node:fs";
export const MuxRecorder = async () => ({
  event: async ({ event }) => {
    appendFileSync(%s, JSON.stringify({ at: Date.now() / 1000, source: "opencode", payload: event }) + "\\n");
  },
});
"""


class EventRecorder:
    """Records what each agent's own signal mechanism reports, into one JSON-lines file, for assertions.

    - Claude: `claude_settings()` is a `--settings` JSON whose hooks run the recorder (payload on stdin).
    - Codex: `codex_notify()` is the `-c notify=[...]` override (payload as the last argument).
    - OpenCode: `opencode_plugin()` is a `file://` plugin URL for OPENCODE_CONFIG_CONTENT's `plugin` list.
    """

    CLAUDE_EVENTS = (
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PermissionRequest",
        "PostToolUse",
        "Notification",
        "Stop",
        "StopFailure",
        "SessionEnd",
    )

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "events.jsonl"
        self.path.touch()
        self.script = directory / "record.py"
        self.script.write_text(_RECORDER_PY)
        self.plugin = directory / "recorder.js"
        self.plugin.write_text(_RECORDER_JS % json.dumps(str(self.path)))

    def _argv(self, source: str) -> list[str]:
        return [sys.executable, str(self.script), str(self.path), source]

    def claude_settings(self) -> str:
        command = shlex.join(self._argv("claude"))
        hooks = {event: [{"hooks": [{"type": "command", "command": command}]}] for event in self.CLAUDE_EVENTS}
        return json.dumps({"hooks": hooks})

    def codex_notify(self) -> str:
        return "notify=" + json.dumps(self._argv("codex"))

    def opencode_plugin(self) -> str:
        return self.plugin.as_uri()

    def events(self) -> list[dict[str, Any]]:
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def names(self) -> list[str]:
        """One name per event: Claude's hook_event_name (+ notification_type), Codex's type, OpenCode's type
        (+ session status)."""
        out = []
        for event in self.events():
            payload = event["payload"]
            if event["source"] == "claude":
                name = str(payload.get("hook_event_name"))
                if payload.get("notification_type"):
                    name += f":{payload['notification_type']}"
            elif event["source"] == "codex":
                name = str(payload.get("type"))
            else:
                name = str(payload.get("type"))
                status = (payload.get("properties") or {}).get("status")
                if isinstance(status, dict) and status.get("type"):
                    name += f":{status['type']}"
            out.append(name)
        return out


def press_until(press: Callable[[], None], taken: Callable[[], object], tries: int = 3, timeout: float = 10.0) -> None:
    """Press a dialog's key until `taken()` holds, as a user would press again. Codex 0.169 can drop the key that
    answers its approval: reproduced with its thread-title side request ending as the key lands, the approval then
    stays on screen for good; seen once more in a full run on a loaded machine."""
    for _ in range(tries):
        press()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if taken():
                return
            time.sleep(0.05)
    raise AssertionError(f"the key was not taken after {tries} presses, {timeout}s apart")


class AgentTmux:
    """Runs programs in windows of a private tmux server and reads their screens. Panes are addressed by id."""

    def __init__(self, socket: str, width: int = 200, height: int = 50, path: str | None = None) -> None:
        self.socket = socket
        self.path = path
        self.width = width
        self.height = height
        self.panes: list[str] = []
        self._pids: list[int] = []

    def tmux(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        proc = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=env, timeout=10)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], remain_on_exit: bool = True) -> str:
        """Start argv in a new session with exactly `env` (plus PATH etc.); return its pane id."""
        if not cwd.is_dir():  # tmux silently falls back to another directory
            raise AssertionError(f"no such directory: {cwd}")
        full = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        if self.path:
            full["PATH"] = self.path
        full.update(env)
        env = {**env, "PATH": full["PATH"]}
        # The server inherits the environment of the client that starts it, so start it clean; -e covers a
        # server someone else started first.
        server_env = {**full, "TMUX_TMPDIR": os.environ.get("TMUX_TMPDIR", "/tmp")}
        name = f"agent{len(self.panes)}"
        flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        pane = self.tmux(
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{pane_id}",
            "-s",
            name,
            "-x",
            str(self.width),
            "-y",
            str(self.height),
            "-c",
            str(cwd),
            *flags,
            "--",
            *argv,
            env=server_env,
        ).strip()
        self.panes.append(pane)
        if remain_on_exit:
            self.tmux("set-option", "-w", "-t", pane, "remain-on-exit", "on")
        pid = self.tmux("display-message", "-p", "-t", pane, "#{pane_pid}").strip()
        if pid.isdigit():
            self._pids.append(int(pid))
        return pane

    def screen(self, pane: str) -> str:
        """The visible screen as plain text, trailing blank lines dropped."""
        return self.tmux("capture-pane", "-p", "-t", pane).rstrip("\n") + "\n"

    def wait_for(
        self, pane: str, pattern: str | Callable[[str], bool], timeout: float = 30.0, interval: float = 0.1
    ) -> str:
        """Poll the screen until `pattern` (a regex, or a predicate) matches; return that screen."""
        match: Callable[[str], bool] = (
            (lambda s: re.search(pattern, s, re.MULTILINE) is not None) if isinstance(pattern, str) else pattern
        )
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            last = self.screen(pane)
            if match(last):
                return last
            if self.dead(pane) is not None and not match(last):
                # One more look: the pane may have printed its last words just before dying.
                last = self.screen(pane)
                if match(last):
                    return last
                raise AssertionError(f"pane {pane} exited ({self.dead(pane)}) before {pattern!r}:\n{last}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen within {timeout}s; screen:\n{last}")
            time.sleep(interval)

    def dead(self, pane: str, wait: float = 10.0) -> int | None:
        """The exit status if the pane's program has exited (remain-on-exit; 128+N if killed by signal N), else
        None. tmux marks the pane dead when its pty closes, which can be seconds before the process exits (Claude
        closes its terminal, then finishes shutting down): wait up to `wait` seconds for the status."""
        deadline = time.monotonic() + wait
        while True:
            out = self.tmux(
                "display-message", "-p", "-t", pane, "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}", check=False
            )
            dead, status, sig = [*out.strip().split(":"), "", ""][:3]
            if dead != "1":
                return None
            if status.isdigit():
                return int(status)
            if sig.isdigit():
                return 128 + int(sig)
            if time.monotonic() > deadline:
                return -1
            # Makes tmux collect an exit it missed (seen with Debian's libutempter build), as mux's snapshot does.
            self.tmux("run-shell", "true", check=False)
            time.sleep(0.05)

    def send_keys(self, pane: str, *keys: str) -> None:
        """Send tmux key names (`Enter`, `Escape`, `Down`, `y`)."""
        self.tmux("send-keys", "-t", pane, *keys)

    def send_text(self, pane: str, text: str) -> None:
        """Type text literally, then Enter as a separate key after a pause (TUIs treat a burst as a paste)."""
        self.tmux("send-keys", "-t", pane, "-l", text)
        time.sleep(0.3)
        self.tmux("send-keys", "-t", pane, "Enter")

    def stop(self) -> None:
        """Kill every pane's process group (agents spawn helpers), then the sessions."""
        for pid in self._pids:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(os.getpgid(pid), sig)
                except (ProcessLookupError, PermissionError):
                    break
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if not _alive(pid):
                    break
        for pane in self.panes:
            self.tmux("kill-pane", "-t", pane, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


@pytest.fixture
def event_recorder(tmp_path_factory: pytest.TempPathFactory) -> EventRecorder:
    return EventRecorder(tmp_path_factory.mktemp("events"))


@pytest.fixture
def agent_tmux(real_agents: RealAgents) -> Iterator[AgentTmux]:
    socket = os.environ.get("MUX_TMUX_SOCKET") or f"realagents-{os.getpid()}"
    runner = AgentTmux(socket, path=real_agents.path_env())
    try:
        yield runner
    finally:
        # pytest shows this when the test failed: what each agent showed at the end, for the CI log.
        for pane in runner.panes:
            print(f"--- last screen of {pane}:\n{runner.tmux('capture-pane', '-p', '-t', pane, check=False)}")
        runner.stop()
