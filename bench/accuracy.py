#!/usr/bin/env python3
"""How often `mux ls` tells the truth about an agent's state (issue 13): scripted sessions against ground truth.

    python bench/accuracy.py                    # 3 rounds of the script per stand-in agent
    python bench/accuracy.py --rounds 1 --json accuracy.json

Each stand-in agent logs its true state (working, waiting, idle) the moment it changes, and the script mixes what
real sessions hold: turns, a question answered, a turn interrupted with Ctrl-C (no Stop hook follows), a failed
request (Claude Code's StopFailure hook), and quiet spells. Two stand-ins run side by side, one with Claude-style
hooks (`hooks = "claude"`) and one the profile's screen rules alone. `mux ls --json` is sampled at 4 Hz meanwhile.

Per agent: agreement with the truth outside a grace window after each true transition (the latency target of
that transition: 1.5 s for one a hook reports, `idle_after` + 1 s for one only the screen shows), the detection
latency of each kind of transition (p50 / p95), and flaps: changes of the state shown that no true transition
explains (a state left and re-entered, or moved to, on unchanged evidence).

    python bench/accuracy.py --real --rounds 3 --json bench/accuracy-real.json
    python bench/accuracy.py --real --agents codex opencode

runs the real Claude Code, Codex and OpenCode (tests/realagents/, installed on first use), one after the other,
against the fake model servers instead: turns, a permission granted, an Esc in a held-back reply, a failed
request (HTTP 500; not yet for OpenCode) and quiet spells, the truth taken from when the script
pressed each key and when the server ended each reply.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # the real agents' installs and servers

from harness import BenchError, Sandbox, install_signal_handlers, percentile
from realagents import FakeModelServer

HOOK_GRACE_S = 1.5
IDLE_AFTER_S = 3.0
AGREEMENT_TARGET_PCT = 99.5
SAMPLE_HZ = 4.0
SAMPLERS = 2

# The stand-in: reads a line a turn from its terminal, logs "<epoch> <state> <how mux can know>" to its truth file.
STAND_IN = r"""
import json, os, signal, subprocess, sys, time

truth_path, args = sys.argv[1], sys.argv[2:]
hooks = {}
if args[:1] == ["--settings"]:
    with open(args[1], encoding="utf-8") as f:
        for event, entries in json.load(f).get("hooks", {}).items():
            hooks[event] = [hook["command"] for entry in entries for hook in entry["hooks"]]


def fire(event):
    for command in hooks.get(event, []):
        subprocess.run(command, shell=True, input=json.dumps({"hook_event_name": event}).encode(), check=False)


def truth(state, event=None):
    with open(truth_path, "a", encoding="utf-8") as f:
        f.write(f"{time.time():.3f} {state} {'hook' if event in hooks else 'screen'}\n")
    if event is not None:
        fire(event)


class Interrupted(Exception):
    pass


def interrupt(signum, frame):
    raise Interrupted


signal.signal(signal.SIGINT, interrupt)


def work(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        print(f"working... {n}", flush=True)
        time.sleep(0.1)


def turn(line):
    word, _, rest = line.partition(" ")
    truth("working", "UserPromptSubmit")
    try:
        if word == "work":
            work(float(rest or "1"))
        elif word == "ask":
            work(0.5)
            truth("waiting", "PermissionRequest")
            sys.stdout.write("Apply the change? (y/n) ")
            sys.stdout.flush()
            answer = sys.stdin.readline().strip()
            truth("working", "PostToolUse")
            print(f"answer: {answer}")
            work(0.5)
        elif word == "fail":
            work(0.5)
            print("API Error: 500 fake server error")
            truth("idle", "StopFailure")
            return
        print("done")
        truth("idle", "Stop")
    except Interrupted:
        print("Interrupted")
        truth("idle")  # no hook: an interrupted turn fires none


truth("idle")
while True:
    sys.stdout.write("standin> ")
    sys.stdout.flush()
    try:
        line = sys.stdin.readline()
    except Interrupted:
        continue
    if not line:
        break
    turn(line.rstrip("\n"))
"""

# (seconds to wait first, what to do): text is typed with Enter, "C-c" is pressed. One round is ~40 s.
SCRIPT: tuple[tuple[float, str], ...] = (
    (0.0, "work 3"),
    (6.0, "ask"),
    (3.0, "y"),
    (5.0, "work 6"),
    (2.0, "C-c"),
    (8.0, "fail"),
    (6.0, "work 1"),
    (5.0, ""),  # a quiet spell before the next round
)


@dataclass(frozen=True)
class Transition:
    at: float
    state: str
    seen_by: str  # "hook" or "screen": what mux can know it by
    before: str


@dataclass(frozen=True)
class Shown:
    """What one `mux ls --json` showed of a task; it looked at some moment between its start and its end."""

    start: float
    end: float
    state: str


@dataclass
class Samples:
    rows: list[tuple[float, float, dict[str, str]]] = field(default_factory=list)  # (start, end, task -> state)
    lock: threading.Lock = field(default_factory=threading.Lock)


def profile(name: str, script: Path, truth: Path, hooks: bool) -> str:
    command = json.dumps([sys.executable, str(script), str(truth)])
    return (
        f"command = {command}\n"
        f'hooks = "{"claude" if hooks else "none"}"\n'
        "[status]\n"
        f"idle_after = {IDLE_AFTER_S}\n"
        "waiting = ['\\(y/n\\)\\s*\\Z']\n"
        "working = ['working\\.\\.\\. \\d+\\s*\\Z']\n"
        "idle = ['standin>\\s*\\Z']\n"
    )


def read_truth(path: Path) -> list[Transition]:
    found: list[Transition] = []
    before = "starting"
    for line in path.read_text().splitlines():
        at, state, seen_by = line.split()
        found.append(Transition(float(at), state, seen_by, before))
        before = state
    return found


def truth_at(transitions: list[Transition], at: float) -> Transition | None:
    current = None
    for item in transitions:
        if item.at > at:
            break
        current = item
    return current


def grace(item: Transition) -> float:
    return HOOK_GRACE_S if item.seen_by == "hook" else IDLE_AFTER_S + 1.0


def judge(transitions: list[Transition], shown: list[Shown]) -> dict[str, Any]:
    """Agreement outside the grace windows, latency per kind of transition, and flaps."""
    judged = agreed = 0
    for item in shown:
        current = truth_at(transitions, item.end)
        # Skipped: inside a grace window, or a transition while `ls` ran (which side it saw cannot be told).
        if current is None or item.start - current.at < grace(current) or truth_at(transitions, item.start) != current:
            continue
        judged += 1
        agreed += item.state == current.state
    latencies: dict[str, list[float]] = {}
    for index, change in enumerate(transitions[1:], start=1):
        until = transitions[index + 1].at if index + 1 < len(transitions) else float("inf")
        seen = next((s.end for s in shown if change.at <= s.start < until and s.state == change.state), None)
        if seen is not None:
            latencies.setdefault(f"{change.before}->{change.state} ({change.seen_by})", []).append(seen - change.at)
    flaps = []
    for before, item in itertools.pairwise(shown):
        current = truth_at(transitions, item.end)
        # A change of what `ls` shows that no transition explains: none since the previous look, or only one
        # longer ago than its grace window.
        explained = current is not None and current.at >= before.start - grace(current)
        if item.state != before.state and not explained:
            truth = current.state if current else None
            flaps.append({"at": round(item.end, 2), "from": before.state, "to": item.state, "truth": truth})
    return {
        "samples": len(shown),
        "judged": judged,
        "agreement_pct": round(100.0 * agreed / judged, 2) if judged else None,
        "latency_s": {
            kind: {"p50": round(statistics.median(v), 2), "p95": round(percentile(v, 0.95), 2), "n": len(v)}
            for kind, v in sorted(latencies.items())
        },
        # Shorter than a look of `ls` can catch (a waiting of 0.1 s), or never shown at all.
        "missed": len(transitions) - 1 - sum(len(v) for v in latencies.values()),
        "flaps": flaps,
    }


@contextlib.contextmanager
def sampling(box: Sandbox) -> Iterator[Samples]:
    """`mux ls` sampled by SAMPLERS threads while the block runs; they are stopped and joined as it ends, however it
    ends (before the sandbox goes)."""
    samples, stop = Samples(), threading.Event()
    samplers = [
        threading.Thread(target=sample, args=(box, samples, stop, index / SAMPLE_HZ), daemon=True)
        for index in range(SAMPLERS)
    ]
    for sampler in samplers:
        sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        for sampler in samplers:
            sampler.join()


def sample(box: Sandbox, samples: Samples, stop: threading.Event, offset: float) -> None:
    """One of SAMPLERS threads, each running `ls` every SAMPLERS / SAMPLE_HZ s: together 4 Hz, as long as one `ls`
    takes less than that period."""
    period = SAMPLERS / SAMPLE_HZ
    stop.wait(offset)
    while not stop.is_set():
        started = time.time()
        _, rows = box.ls()
        with samples.lock:
            samples.rows.append((started, time.time(), {str(r["name"]): str(r["state"]) for r in rows}))
        stop.wait(max(0.0, period - (time.time() - started)))


def run(rounds: int) -> dict[str, Any]:
    box = Sandbox.create()
    try:
        box.start_server()
        box.build_repo(60)
        script = box.root / "standin.py"
        script.write_text(STAND_IN)
        agents = box.root / "home" / ".config" / "mux" / "agents"
        agents.mkdir(parents=True)
        names = {"standin-hooks": True, "standin-screen": False}
        for name, hooks in names.items():
            (agents / f"{name}.toml").write_text(profile(name, script, box.root / f"{name}.truth", hooks))
            box.mux("new", name, "-a", name)
        deadline = time.monotonic() + 60
        while {r["state"] for r in box.ls()[1]} != {"idle"}:
            if time.monotonic() > deadline:
                raise BenchError("the stand-ins never went idle")
            time.sleep(0.2)
        windows = {str(r["name"]): str(r["window"]) for r in box.ls()[1]}
        started = time.time()
        with sampling(box) as samples:
            for _ in range(rounds):
                for pause, action in SCRIPT:
                    time.sleep(pause)
                    for window in windows.values():
                        if action == "C-c":
                            box.tmux("send-keys", "-t", window, "C-c")
                        elif action:
                            box.tmux("send-keys", "-t", window, "-l", action)
                            box.tmux("send-keys", "-t", window, "Enter")
        elapsed = time.time() - started
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rounds": rounds,
            "seconds": round(elapsed, 1),
            "sample_hz": round(len(samples.rows) / elapsed, 2),
            "agents": {},
        }
        for name in names:
            shown = [Shown(start, end, rows[name]) for start, end, rows in sorted(samples.rows) if name in rows]
            results["agents"][name] = judge(read_truth(box.root / f"{name}.truth"), shown)
        return results
    finally:
        box.close()


class RealSession:
    """A real agent in a mux task against its fake model server (tests/realagents/), the truth written as the
    script goes: working from the Enter that sends a prompt, waiting from the end of a reply asking for a
    permission, idle from the end of the last reply of a turn (the server knows when each ends) or the Esc.
    `seen_by` is what mux can know each by: the agent's hook, or only its screen."""

    NAME: ClassVar[str]
    LABEL: ClassVar[str]
    STARTS_WORKING_BY: ClassVar[str] = "hook"

    def __init__(self, box: Sandbox, server: FakeModelServer) -> None:
        from realagents.plugin import load_real_agents

        self.agents = load_real_agents()
        self.box = box
        self.server = server
        # The task's worktree, trusted ahead where the agent asks (no trust dialog).
        self.worktree = box.repo.parent / f"{box.repo.name}.worktrees" / self.NAME
        self.transitions = [Transition(time.time(), "starting", "screen", "starting")]
        self.window = ""

    def env(self) -> dict[str, str]:
        """The agent's environment, written over the sandbox's before its tmux server starts."""
        raise NotImplementedError

    def round(self, index: int) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.box.mux("new", self.NAME, "-a", self.NAME)
        rows = self.wait_for(lambda r: r["state"] == "idle", 90)
        self.window = str(rows["window"])
        self.truth("idle", "screen")

    def wait_for(self, check: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = next((r for r in self.box.ls()[1] if r["name"] == self.NAME), None)
            if row is not None and check(row):
                return row
            time.sleep(0.25)
        raise BenchError(f"{self.NAME} never got there: {row}")

    def truth(self, state: str, seen_by: str, at: float | None = None) -> None:
        self.transitions.append(Transition(at or time.time(), state, seen_by, self.transitions[-1].state))

    def keys(self, *keys: str) -> float:
        pressed = time.time()
        self.box.tmux("send-keys", "-t", self.window, *keys)
        return pressed

    def screen(self) -> str:
        return self.box.tmux("capture-pane", "-p", "-t", self.window)

    def prompt(self, text: str) -> None:
        self.box.tmux("send-keys", "-t", self.window, "-l", text)
        # A beat between the text and its Enter, as a person types: the truth is the Enter's time, not mux send's
        # return, which would hide part of the latency.
        time.sleep(0.3)
        self.truth("working", self.STARTS_WORKING_BY, self.keys("Enter"))

    def reply_ended(self, count: int, timeout: float = 60) -> float:
        """When the `count`th model request's reply was over."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            requests = self.server.model_requests()
            ended = requests[count - 1].ended if len(requests) >= count else None
            if ended is not None:
                return ended
            time.sleep(0.05)
        made = len(self.server.model_requests())
        raise BenchError(f"{self.NAME} made {made} model requests, not {count}:\n{self.screen()}")

    def close(self) -> None:
        self.server.stop()


class ClaudeSession(RealSession):
    NAME = "claude"
    LABEL = "claude 2.1.330 (real)"

    def env(self) -> dict[str, str]:
        from realagents.homes import claude_env

        # Claude trusts no folder for its parent's sake: the worktree itself.
        return claude_env(Path(self.box.env["HOME"]), self.worktree, self.server.url)

    def round(self, index: int) -> None:
        from realagents import Turn

        asked = len(self.server.model_requests())
        target = self.box.root / f"hello-{index}.txt"
        self.server.script = [
            Turn.text("Thought it over.", delay=3.0),
            Turn.tool_use("Write", {"file_path": str(target), "content": "hi\n"}, delay=1.0),
            Turn.text("Done.", delay=1.0),
            Turn.text("Never sent.", delay=60.0),
            Turn.error(500, "fake failure"),
        ]
        self.prompt(f"turn {index}")
        self.truth("idle", "hook", self.reply_ended(asked + 1))
        time.sleep(5.0)  # a quiet spell
        self.prompt(f"write hello-{index}.txt")
        self.truth("waiting", "hook", self.reply_ended(asked + 2))
        time.sleep(3.0)
        self.truth("working", "hook", self.keys("Enter"))  # "1. Yes" has the focus
        self.truth("idle", "hook", self.reply_ended(asked + 3))
        time.sleep(5.0)
        self.prompt(f"think hard {index}")
        time.sleep(3.0)  # its reply held back 60 s
        # No hook follows an Esc: Claude's own status file says idle, else the idle prompt on screen.
        self.truth("idle", "screen", self.keys("Escape"))
        time.sleep(6.0)
        self.prompt(f"try {index}")
        self.truth("idle", "hook", self.reply_ended(asked + 5))  # StopFailure
        time.sleep(6.0)


class CodexSession(RealSession):
    """Codex tells its notify program of a finished turn only: a turn's start, its approval dialog, an Esc and a
    failed request are on its screen alone."""

    NAME = "codex"
    LABEL = "codex 0.169.0 (real)"
    STARTS_WORKING_BY = "screen"

    def env(self) -> dict[str, str]:
        from realagents.homes import codex_env

        env = codex_env(Path(self.box.env["HOME"]), self.worktree, self.server.url)
        # Codex trusts folders one by one: mux answers its trust screen, should it show for the worktree.
        profiles = Path(env["XDG_CONFIG_HOME"]) / "mux" / "agents"
        profiles.mkdir(parents=True, exist_ok=True)
        (profiles / "codex.toml").write_text("auto_trust = true\n")
        return env

    def round(self, index: int) -> None:
        from realagents import Turn

        asked = len(self.server.model_requests())
        target = self.worktree / f"hello-{index}.txt"
        command = {
            "cmd": f"echo hi > {target.name}",
            "sandbox_permissions": "require_escalated",
            "justification": f"Write {target.name}?",
        }
        self.server.script = [
            Turn.text("Thought it over.", delay=3.0),
            Turn.tool_use("exec_command", command, delay=1.0),
            Turn.text("Done.", delay=1.0),
            Turn.text("Never sent.", delay=60.0),
            Turn.error(500, "fake failure", delay=1.0),
        ]
        self.prompt(f"turn {index}")
        self.truth("idle", "hook", self.reply_ended(asked + 1))  # agent-turn-complete
        time.sleep(5.0)
        self.prompt(f"write {target.name}")
        self.truth("waiting", "screen", self.reply_ended(asked + 2))
        time.sleep(3.0)
        self.truth("working", "screen", self.approve(target))
        self.truth("idle", "hook", self.reply_ended(asked + 3))
        time.sleep(5.0)
        self.prompt(f"think hard {index}")
        time.sleep(3.0)
        self.truth("idle", "screen", self.keys("Escape"))
        time.sleep(6.0)
        self.prompt(f"try {index}")
        self.truth("idle", "screen", self.reply_ended(asked + 5))
        time.sleep(6.0)

    def approve(self, target: Path) -> float:
        """Enter on "1. Yes" until the command ran (Codex may drop a key while it redraws); the Enter that did."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pressed = self.keys("Enter")
            time.sleep(1.0)
            if target.exists():
                return pressed
        raise BenchError(f"codex never ran the approved command:\n{self.screen()}")


class OpenCodeSession(RealSession):
    """OpenCode's events come from mux's plugin; an Esc pressed twice (it asks to confirm) ends the turn, and
    OpenCode's own session.idle for it comes seconds later: its screen tells first."""

    NAME = "opencode"
    LABEL = "opencode 1.18.33 (real)"

    def env(self) -> dict[str, str]:
        from realagents.homes import opencode_env

        home = Path(self.box.env["HOME"])
        extra = {"permission": {"bash": "ask"}}
        return opencode_env(home, None, self.server.url, extra=extra, seed=self.agents.opencode_config_seed)

    def round(self, index: int) -> None:
        from realagents import Turn

        asked = len(self.server.model_requests())
        target = f"hello-{index}.txt"
        self.server.script = [
            Turn.text("Thought it over.", delay=3.0),
            Turn.tool_use("bash", {"command": f"echo hi > {target}", "description": f"Write {target}"}, delay=1.0),
            Turn.text("Done.", delay=1.0),
            Turn.text("Never sent.", delay=60.0),
        ]
        self.prompt(f"turn {index}")
        self.truth("idle", "hook", self.reply_ended(asked + 1))
        time.sleep(5.0)
        self.prompt(f"write {target}")
        self.truth("waiting", "hook", self.reply_ended(asked + 2))
        time.sleep(3.0)
        self.truth("working", "hook", self.keys("Enter"))
        self.truth("idle", "hook", self.reply_ended(asked + 3))
        time.sleep(5.0)
        self.prompt(f"think hard {index}")
        time.sleep(3.0)
        self.keys("Escape")
        deadline = time.monotonic() + 5
        while "again" not in self.screen():
            if time.monotonic() > deadline:
                raise BenchError(f"opencode never asked for a second Esc:\n{self.screen()}")
            time.sleep(0.1)
        self.truth("idle", "screen", self.keys("Escape"))
        time.sleep(10.0)  # past OpenCode's own late session.idle


REAL_SESSIONS: dict[str, type[RealSession]] = {
    session.NAME: session for session in (ClaudeSession, CodexSession, OpenCodeSession)
}


def server_for(session: type[RealSession]) -> FakeModelServer:
    from realagents.fake_anthropic import FakeAnthropic
    from realagents.fake_openai import FakeOpenAI

    return FakeAnthropic() if session is ClaudeSession else FakeOpenAI()


def run_real(rounds: int, agents: list[str]) -> dict[str, Any]:
    """The script's rounds against each real agent in turn, `ls` sampled at 4 Hz."""
    started = time.time()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rounds": rounds,
        "agents": {},
    }
    seconds = rate = 0.0
    for name in agents:
        kind = REAL_SESSIONS[name]
        elapsed, hz, judged = run_real_agent(kind, rounds)
        seconds, rate = seconds + elapsed, rate + hz * elapsed
        results["agents"][kind.LABEL] = judged
    results["seconds"] = round(seconds or time.time() - started, 1)
    results["sample_hz"] = round(rate / seconds, 2) if seconds else 0.0
    return results


def run_real_agent(kind: type[RealSession], rounds: int) -> tuple[float, float, dict[str, Any]]:
    """(seconds sampled, samples a second, the judgement) of one real agent's rounds in a sandbox of its own."""
    box = Sandbox.create()
    session: RealSession | None = None
    try:
        session = kind(box, server_for(kind))
        box.env.update(session.env())  # before the tmux server: its environment is what the agent gets
        box.env["PATH"] = session.agents.path_env()
        box.start_server()
        box.build_repo(20)
        session.start()
        started = time.time()
        with sampling(box) as samples:
            for index in range(rounds):
                session.round(index)
        elapsed = time.time() - started
        name = session.NAME
        shown = [Shown(start, end, rows[name]) for start, end, rows in sorted(samples.rows) if name in rows]
        transitions = session.transitions[1:]  # from the idle it was in when sampling began
        return elapsed, len(samples.rows) / elapsed, judge(transitions, shown)
    finally:
        if session is not None:
            session.close()
        box.close()


def table(results: dict[str, Any]) -> str:
    lines = [
        f"state accuracy, {results['date']}: {results['rounds']} round(s), {results['seconds']} s, "
        f"ls sampled at {results['sample_hz']} Hz"
    ]
    for name, item in results["agents"].items():
        lines.append(
            f"{name}: agreement {item['agreement_pct']}% of {item['judged']} samples, {len(item['flaps'])} flaps, "
            f"{item['missed']} transitions never shown"
        )
        for kind, figure in item["latency_s"].items():
            lines.append(f"  {kind}: p50 {figure['p50']} s, p95 {figure['p95']} s (n={figure['n']})")
    return "\n".join(lines)


def verdicts(item: dict[str, Any]) -> list[str]:
    """Each of issue 13's targets for one agent, met or **missed**."""
    found = [
        f"agreement {item['agreement_pct']}% (>= {AGREEMENT_TARGET_PCT}%: "
        f"{'met' if (item['agreement_pct'] or 0) >= AGREEMENT_TARGET_PCT else '**missed**'})",
        f"{len(item['flaps'])} flaps (none: {'met' if not item['flaps'] else '**missed**'})",
    ]
    for kind, figure in item["latency_s"].items():
        limit = HOOK_GRACE_S if kind.endswith("(hook)") else IDLE_AFTER_S + 1.0
        mark = "met" if figure["p95"] < limit else "**missed**"
        found.append(f"{kind} p50 {figure['p50']} s, p95 {figure['p95']} s (< {limit:g} s: {mark})")
    return found


def markdown(runs: list[dict[str, Any]]) -> str:
    """The README's accuracy figures, made from runs' JSON (the stand-ins', the real agents')."""
    lines = []
    for results in runs:
        real = " --real" if any("(real)" in name for name in results["agents"]) else ""
        lines.append(
            f"Figures of {results['date'][:10]} (`python bench/accuracy.py{real} --rounds {results['rounds']}`): "
            f"{results['seconds']:.0f} s of scripted sessions, `mux ls --json` sampled at {results['sample_hz']:g} Hz."
        )
        lines.append("")
    lines += ["| agent | agreement, flaps, latency by transition (p50, p95) |", "| --- | --- |"]
    for results in runs:
        for name, item in results["agents"].items():
            lines.append(f"| {name} | {'; '.join(verdicts(item))} |")
    return "\n".join(lines) + "\n"


def write_readme(paths: list[Path]) -> None:
    from report import README, with_block

    body = markdown([json.loads(path.read_text()) for path in paths])
    generator = f"python bench/accuracy.py --write-readme {' '.join(map(str, paths))}"
    README.write_text(with_block(README.read_text(encoding="utf-8"), "accuracy", body, generator), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the script (default 3, ~40 s each)")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--write-readme", type=Path, nargs="+", metavar="JSON", help="write README.md's figures from runs"
    )
    parser.add_argument("--real", action="store_true", help="the real agents against the fake model servers")
    parser.add_argument(
        "--agents", nargs="+", choices=list(REAL_SESSIONS), default=list(REAL_SESSIONS), help="with --real: which"
    )
    args = parser.parse_args(argv)
    if args.write_readme is not None:
        write_readme(args.write_readme)
        return 0
    install_signal_handlers()
    try:
        rounds = max(1, args.rounds)
        results = run_real(rounds, args.agents) if args.real else run(rounds)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
