"""The hook command agents call, and the adapters that wire each agent to it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from muxagent.model import State
from muxagent.status import adapters
from muxagent.status.events import events_path, read_current_run


def run_hook(
    state_dir: Path, *args: str, stdin: str | bytes = b"", task: str = "t1", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "MUX_TASK": task, "MUX_STATE_DIR": str(state_dir), **(env or {})}
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [sys.executable, "-P", "-m", "muxagent", "_hook", *args],
        input=data,
        env=env,
        capture_output=True,
        timeout=10,
    )


def recorded(state_dir: Path, task: str = "t1") -> list[tuple[str, State | None]]:
    return [(e.name, e.state) for e in read_current_run(events_path(state_dir, task))]


def test_claude_events_are_recorded_with_their_state(tmp_path: Path) -> None:
    for payload in (
        {"hook_event_name": "PreToolUse", "tool_name": "Write"},
        {"hook_event_name": "Notification", "notification_type": "permission_prompt"},
        {"hook_event_name": "Stop"},
    ):
        proc = run_hook(tmp_path, "claude", stdin=json.dumps(payload))
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert recorded(tmp_path) == [
        ("PreToolUse", State.WORKING),
        ("Notification:permission_prompt", State.WAITING),
        ("Stop", State.IDLE),
    ]


def test_codex_notify_payload_arrives_as_an_argument(tmp_path: Path) -> None:
    payload = {"type": "agent-turn-complete", "thread-id": "abc", "last-assistant-message": "done"}
    assert run_hook(tmp_path, "codex", json.dumps(payload)).returncode == 0
    event = read_current_run(events_path(tmp_path, "t1"))[0]
    assert (event.name, event.state, event.detail) == ("agent-turn-complete", State.IDLE, "abc")


def test_opencode_events(tmp_path: Path) -> None:
    for payload in (
        {"type": "session.status", "properties": {"status": {"type": "busy"}}},
        {"type": "permission.asked", "properties": {}},
        {"type": "session.idle", "properties": {}},
    ):
        run_hook(tmp_path, "opencode", json.dumps(payload))
    assert recorded(tmp_path) == [
        ("session.status:busy", State.WORKING),
        ("permission.asked", State.WAITING),
        ("session.idle", State.IDLE),
    ]


def test_stamped_hooks_that_land_out_of_order_keep_the_agents_order(tmp_path: Path) -> None:
    """OpenCode's plugin starts hooks without waiting: a late `busy` hook must not bury the `idle` after it."""
    now = time.time()
    busy = {"type": "session.status", "properties": {"status": {"type": "busy"}}}
    idle = {"type": "session.idle", "properties": {}}
    run_hook(tmp_path, "opencode", json.dumps(idle), env={"MUX_HOOK_TS": f"{now - 1:.6f}"})
    run_hook(tmp_path, "opencode", json.dumps(busy), env={"MUX_HOOK_TS": f"{now - 2:.6f}"})
    assert recorded(tmp_path) == [("session.status:busy", State.WORKING), ("session.idle", State.IDLE)]


@pytest.mark.parametrize("stamp", ["", "soon", "nan", "-5", "9e99"])
def test_a_bad_stamp_falls_back_to_the_hooks_own_clock(tmp_path: Path, stamp: str) -> None:
    before = time.time()
    run_hook(tmp_path, "opencode", json.dumps({"type": "session.idle"}), env={"MUX_HOOK_TS": stamp})
    (event,) = read_current_run(events_path(tmp_path, "t1"))
    assert before <= event.ts <= time.time()


@pytest.mark.parametrize(
    "stdin",
    [b"", b"not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"hook_event_name": ' + b"9" * 3_000_000 + b"}"],
    ids=["empty", "malformed", "binary", "not-an-object", "huge"],
)
def test_bad_payloads_exit_zero_quietly(tmp_path: Path, stdin: bytes) -> None:
    proc = run_hook(tmp_path, "claude", stdin=stdin)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert all(state is None for _, state in recorded(tmp_path))


@pytest.mark.parametrize("task", ["", "../escape", "a/b"])
def test_unknown_or_hostile_task_writes_nothing(tmp_path: Path, task: str) -> None:
    proc = run_hook(tmp_path, "claude", stdin='{"hook_event_name": "Stop"}', task=task)
    assert proc.returncode == 0 and proc.stderr == b""
    assert not (tmp_path / "events").exists() and not (tmp_path.parent / "escape.jsonl").exists()


def test_missing_or_locked_state_dir_still_exits_zero(tmp_path: Path) -> None:
    assert run_hook(tmp_path / "nope", "claude", stdin='{"hook_event_name": "Stop"}').returncode == 0
    locked = tmp_path / "locked"
    (locked / "events").mkdir(parents=True)
    (locked / "events" / "t1.jsonl").mkdir()  # not writable as a file
    assert run_hook(locked, "claude", stdin='{"hook_event_name": "Stop"}').returncode == 0


# What the hook command may load: an agent runs it on every event of its turn, so it must cost little more
# than starting Python (bench/ measures that figure). A timing assertion here only flaked on a loaded machine;
# this list fails on the regression that matters, the hook importing the CLI, typer, GitPython or the rooms.
HOOK_MODULES = {"muxagent", "muxagent.model", "muxagent.status", "muxagent.status.events", "muxagent.status.hooks"}
NOT_ON_THE_HOOK = ("typer", "click", "git", "libtmux", "watchdog", "re2", "tomllib", "subprocess")


def test_hook_command_imports_only_what_it_needs(tmp_path: Path) -> None:
    proc = run_hook(tmp_path, "claude", stdin='{"hook_event_name": "Stop"}', env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0
    assert recorded(tmp_path) == [("Stop", State.IDLE)]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    assert {name for name in imported if name.startswith("muxagent")} == HOOK_MODULES
    assert not [name for name in imported if name.split(".")[0] in NOT_ON_THE_HOOK]


def test_claude_settings_call_the_hook_for_every_event(tmp_path: Path) -> None:
    adapter = adapters.install("claude", tmp_path)
    assert adapter.args[0] == "--settings"
    settings = json.loads(Path(adapter.args[1]).read_text())
    assert {"PermissionRequest", "Notification", "Stop", "PreToolUse", "UserPromptSubmit"} <= set(settings["hooks"])
    command = settings["hooks"]["Stop"][0]["hooks"][0]["command"]
    env = {**os.environ, "MUX_TASK": "t1", "MUX_STATE_DIR": str(tmp_path)}
    subprocess.run(command, shell=True, input=b'{"hook_event_name": "Stop"}', env=env, check=True)
    assert recorded(tmp_path) == [("Stop", State.IDLE)]


def test_codex_notify_override_is_valid_toml_naming_the_hook(tmp_path: Path) -> None:
    flag, override = adapters.install("codex", tmp_path).args
    assert flag == "-c"
    parsed = tomllib.loads(override)
    assert parsed["notify"][-2:] == ["_hook", "codex"]


def test_opencode_plugin_is_added_to_the_users_own_config_content(tmp_path: Path) -> None:
    users = json.dumps({"provider": {"fake": {"npm": "x"}}, "plugin": ["file:///theirs.js"]})
    adapter = adapters.install("opencode", tmp_path, {"OPENCODE_CONFIG_CONTENT": users})
    config = json.loads(adapter.env["OPENCODE_CONFIG_CONTENT"])
    assert config["provider"] == {"fake": {"npm": "x"}} and config["plugin"][0] == "file:///theirs.js"
    plugin = config["plugin"][1]
    assert plugin.startswith("file://")
    text = Path(plugin.removeprefix("file://")).read_text()
    assert '"_hook", "opencode"' in text and "permission.asked" in text


# Runs mux's OpenCode plugin under node with Bun.spawn stood in for: the events in, each hook's payload out.
_PLUGIN_DRIVER = """
const spawned = [];
globalThis.Bun = { spawn: (argv) => { spawned.push(JSON.parse(argv[argv.length - 1])); return { exited: 0 }; } };
const { MuxStatus } = await import(process.argv[1]);
const plugin = await MuxStatus({});
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
for (const event of JSON.parse(Buffer.concat(chunks).toString())) await plugin.event({ event });
console.log(JSON.stringify(spawned));
"""


def opencode_plugin_payloads(tmp_path: Path, events: list[Any]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is on PATH wherever the real agents are installed"
    plugin = tmp_path / "plugin.mjs"
    plugin.write_bytes(adapters._opencode_plugin(tmp_path).read_bytes())
    proc = subprocess.run(
        [node, "--input-type=module", "-e", _PLUGIN_DRIVER, plugin.as_uri()],
        input=json.dumps(events), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found


def message(session: str, id: str, role: str) -> dict[str, Any]:
    return {"type": "message.updated", "properties": {"info": {"id": id, "sessionID": session, "role": role}}}


def text_part(session: str, message_id: str, part: str, text: str, **extra: object) -> dict[str, Any]:
    body = {"id": part, "messageID": message_id, "sessionID": session, "type": "text", "text": text, **extra}
    return {"type": "message.part.updated", "properties": {"part": body}}


def test_opencode_plugin_gives_session_idle_the_turns_prompt_and_final_text(tmp_path: Path) -> None:
    long_reply = "x" * 2500
    events = [
        message("s1", "m1", "user"),
        text_part("s1", "m1", "p1", "write hello.txt"),
        text_part("s1", "m1", "p2", "<file contents>", synthetic=True),  # OpenCode's own addition
        {"type": "session.status", "properties": {"sessionID": "s1", "status": {"type": "busy"}}},
        message("s2", "m9", "assistant"),  # another session's reply is not this turn's
        text_part("s2", "m9", "p9", "the other session"),
        message("s1", "m2", "assistant"),
        text_part("s1", "m2", "p3", "Done: "),
        text_part("s1", "m2", "p3", "Done: wrote"),  # a part streams: each update holds its whole text so far
        text_part("s1", "m2", "p4", " hello.txt."),
        {"type": "message.part.updated"},  # shapes it does not know change nothing
        {"type": "session.idle", "properties": {"sessionID": "s1"}},
        message("s1", "m3", "user"),
        text_part("s1", "m3", "p5", "and again"),
        message("s1", "m4", "assistant"),
        text_part("s1", "m4", "p6", long_reply),
        {"type": "session.idle", "properties": {"sessionID": "s1"}},
    ]
    sent = opencode_plugin_payloads(tmp_path, events)
    assert [payload["type"] for payload in sent] == ["session.status", "session.idle", "session.idle"]
    assert sent[1]["mux"] == {"prompt": "write hello.txt", "message": "Done: wrote hello.txt."}
    assert sent[2]["mux"] == {"prompt": "and again", "message": "x" * 2000}  # hooks.MAX_TEXT: argv stays short
    for payload in sent[1:]:
        assert run_hook(tmp_path, "opencode", json.dumps(payload)).returncode == 0
    turns = [(e.prompt, e.message) for e in read_current_run(events_path(tmp_path, "t1"))]
    assert turns == [("write hello.txt", "Done: wrote hello.txt."), ("and again", "x" * 2000)]
