"""`mux send` that tells the truth, `mux queue`, `mux wait --any`, hooks that belong to one launch, `mux guide`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mux_ls, profile_with, run_mux, wait_until, write_toml

from muxagent.commands import guide

pytestmark = pytest.mark.usefixtures("fake_profile")

# An agent that takes each line it reads without showing anything (no echo, no output), as a TUI that redraws
# nothing until its model answers might; with `--settings` it fires UserPromptSubmit, as Claude Code does.
SILENT_AGENT = """\
import json, subprocess, sys, termios
hooks = []
if sys.argv[1:2] == ["--settings"]:
    with open(sys.argv[2]) as f:
        entries = json.load(f)["hooks"]["UserPromptSubmit"]
    hooks = [hook["command"] for entry in entries for hook in entry["hooks"]]
attrs = termios.tcgetattr(0)
attrs[3] &= ~termios.ECHO
termios.tcsetattr(0, termios.TCSANOW, attrs)
print("silent>", flush=True)
for line in sys.stdin:
    for command in hooks:
        subprocess.run(command, shell=True, input=b'{"hook_event_name": "UserPromptSubmit"}', check=False)
"""


def state(repo: Path, name: str) -> str:
    return str(mux_ls(repo)[name]["state"])


def screen(repo: Path, name: str) -> str:
    return run_mux("peek", name, cwd=repo).stdout


@pytest.fixture
def silent_profile(fake_profile: Path, tmp_path: Path) -> str:
    """`silent` (no hooks) and `silenthook` (Claude-style hooks): agents whose screen never changes."""
    script = tmp_path / "silent_agent.py"
    script.write_text(SILENT_AGENT)
    for name, hooks in (("silent", "none"), ("silenthook", "claude")):
        write_toml(
            fake_profile.parent / f"{name}.toml",
            {"command": [sys.executable, str(script)], "hooks": hooks, "status": {"idle": [r"silent>\s*\Z"]}},
        )
    return "silent"


def test_send_to_an_idle_agent_exits_0_once_it_took_the_text(repo: Path) -> None:
    run_mux("new", "t", "-a", "fake", cwd=repo)
    wait_until(lambda: state(repo, "t") == "idle")
    proc = run_mux("send", "t", "write sent.txt yes", cwd=repo)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    # It returned after the agent showed the text was taken: no later look is needed to know it.
    assert "got: write sent.txt yes" in screen(repo, "t") or "wrote sent.txt" in screen(repo, "t")
    wait_until(lambda: state(repo, "t") == "idle")
    answer = json.loads(run_mux("send", "t", "again", "--json", cwd=repo).stdout)
    assert answer == {"name": "t", "taken_by": "screen"}  # no hooks: its screen told


def test_send_to_a_working_agent_refuses_with_exit_5_and_types_nothing(repo: Path) -> None:
    run_mux("new", "busy", "-a", "fake", "-p", "busy 30", cwd=repo)
    wait_until(lambda: state(repo, "busy") == "working")
    refused = run_mux("send", "busy", "write early.txt x", cwd=repo, check=False)
    assert refused.returncode == 5
    assert "--when-idle" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert "early.txt" not in screen(repo, "busy")
    typed = run_mux("send", "busy", "--now", "typed mid-turn", cwd=repo, check=False)
    assert typed.returncode == 0, typed.stderr
    assert "typed mid-turn" in screen(repo, "busy")  # the terminal's echo, inside the running turn


def test_send_that_the_agent_does_not_take_exits_6_after_the_timeout(repo: Path, silent_profile: str) -> None:
    run_mux("new", "mute", "-a", silent_profile, cwd=repo)
    wait_until(lambda: state(repo, "mute") == "idle")
    proc = run_mux("send", "mute", "hello", "--timeout", "1", cwd=repo, check=False)
    assert proc.returncode == 6
    assert len(proc.stderr.splitlines()) == 1 and "mux peek mute" in proc.stderr and "Traceback" not in proc.stderr


def test_send_is_confirmed_by_the_agents_hook_when_its_screen_stays_the_same(repo: Path, silent_profile: str) -> None:
    run_mux("new", "hooked", "-a", "silenthook", cwd=repo)
    wait_until(lambda: state(repo, "hooked") == "idle")
    proc = run_mux("send", "hooked", "hello", "--timeout", "10", "--json", cwd=repo, check=False)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout) == {"name": "hooked", "taken_by": "hook: UserPromptSubmit"}


def test_send_timeout_must_be_a_number_of_seconds(repo: Path) -> None:
    run_mux("new", "t", "-a", "fake", cwd=repo)
    for bad in ("nan", "-1", "inf"):
        proc = run_mux("send", "t", "hi", "--timeout", bad, cwd=repo, check=False)
        assert proc.returncode == 2 and "--timeout" in proc.stderr and "Traceback" not in proc.stderr
    both = run_mux("send", "t", "hi", "--now", "--when-idle", cwd=repo, check=False)
    assert both.returncode == 2 and "not both" in both.stderr


def test_when_idle_prints_the_id_that_queue_lists_and_cancels(repo: Path) -> None:
    # Both agents wait on a question, so nothing is delivered until the test answers it (a busy spell of a few
    # seconds ran out on a loaded machine, and the monitor delivered a prompt before the queue was listed).
    run_mux("new", "q", "-a", "fake", "-p", "ask", cwd=repo)
    run_mux("new", "other", "-a", "fake", "-p", "ask", cwd=repo)
    worktree = repo.parent / "proj.worktrees" / "q"
    wait_until(lambda: state(repo, "q") == "waiting" and state(repo, "other") == "waiting", timeout=30)
    first = run_mux("send", "q", "--when-idle", "write first.txt one", cwd=repo).stdout.strip()
    second = run_mux("send", "q", "--when-idle", "write second.txt two", cwd=repo).stdout.strip()
    queued = json.loads(run_mux("send", "other", "--when-idle", "for the other task", "--json", cwd=repo).stdout)
    assert (queued["task"], queued["position"], queued["text"]) == ("other", 1, "for the other task")
    elsewhere = queued["id"]
    assert len({first, second, elsewhere}) == 3 and all(len(i.split()) == 1 for i in (first, second, elsewhere))

    listed = json.loads(run_mux("queue", "q", "--json", cwd=repo).stdout)
    assert [(e["id"], e["position"], e["text"]) for e in listed] == [
        (first, 1, "write first.txt one"),
        (second, 2, "write second.txt two"),
    ]
    every = json.loads(run_mux("queue", "--json", cwd=repo).stdout)
    assert {(e["task"], e["id"]) for e in every} == {("q", first), ("q", second), ("other", elsewhere)}
    assert first in run_mux("queue", cwd=repo).stdout

    cancelled = run_mux("queue", "--cancel", first, cwd=repo)
    assert f"cancelled {first} for q" in cancelled.stdout
    again = run_mux("queue", "--cancel", first, cwd=repo, check=False)
    assert again.returncode == 1 and "no queued prompt" in again.stderr
    wrong_task = run_mux("queue", "other", "--cancel", second, cwd=repo, check=False)
    assert wrong_task.returncode == 1
    assert [e["id"] for e in json.loads(run_mux("queue", "q", "--json", cwd=repo).stdout)] == [second]

    run_mux("send", "q", "y", cwd=repo)  # the answer ends the turn: the queue goes in once q is idle
    wait_until(lambda: (worktree / "second.txt").exists(), timeout=45)
    assert not (worktree / "first.txt").exists()
    assert "write first.txt" not in screen(repo, "q")
    assert run_mux("queue", "q", cwd=repo).stdout.strip() == "nothing queued for q"
    journal = (repo / ".git" / "mux" / "journal.jsonl").read_text()
    assert '"cancel-queued"' in journal and "write first.txt one" in journal  # nothing is lost


def test_a_queue_written_by_an_earlier_mux_gets_ids_that_stay_the_same(repo: Path) -> None:
    run_mux("new", "old", "-a", "fake", "-p", "busy 30", cwd=repo)
    wait_until(lambda: state(repo, "old") == "working")
    queue = repo / ".git" / "mux" / "queue"
    queue.mkdir(parents=True, exist_ok=True)
    (queue / "old.json").write_text(json.dumps(["same", "same", "other"]))
    listed = [e["id"] for e in json.loads(run_mux("queue", "old", "--json", cwd=repo).stdout)]
    assert len(set(listed)) == 3
    assert [e["id"] for e in json.loads(run_mux("queue", "old", "--json", cwd=repo).stdout)] == listed
    run_mux("queue", "old", "--cancel", listed[1], cwd=repo)
    left = json.loads(run_mux("queue", "old", "--json", cwd=repo).stdout)
    assert [(e["id"], e["text"]) for e in left] == [(listed[0], "same"), (listed[2], "other")]


def test_queue_of_an_unknown_task_is_refused(repo: Path) -> None:
    proc = run_mux("queue", "nope", cwd=repo, check=False)
    assert proc.returncode == 1 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    assert run_mux("queue", cwd=repo).stdout.strip() == "nothing queued"


def test_wait_any_returns_with_the_first_task_there_and_says_which(repo: Path) -> None:
    for name, prompt in (("a", "busy 30"), ("b", "busy 2"), ("c", "exit 2")):
        run_mux("new", name, "-a", "fake", "-p", prompt, cwd=repo)
    wait_until(lambda: state(repo, "a") == "working")
    timed_out = run_mux("wait", "--any", "a", "c", "--for", "idle", "--timeout", "0.5", cwd=repo, check=False)
    assert timed_out.returncode == 4 and "timed out" in timed_out.stderr
    # c has exited and will never be idle: with --any that leaves the others to get there.
    done = run_mux("wait", "--any", "a", "b", "c", "--for", "idle", "--timeout", "30", cwd=repo)
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["b"]
    assert state(repo, "a") == "working"
    as_json = json.loads(run_mux("wait", "--any", "a", "b", "--json", cwd=repo).stdout)
    assert as_json["for"] == "idle" and [r["name"] for r in as_json["reached"]] == ["b"]
    assert as_json["reached"][0]["state"] == "idle"


def test_wait_any_fails_at_once_when_none_can_get_there(repo: Path) -> None:
    run_mux("new", "x", "-a", "fake", "-p", "exit 1", cwd=repo)
    run_mux("new", "y", "-a", "fake", "-p", "exit 3", cwd=repo)
    wait_until(lambda: {row["exit_status"] for row in mux_ls(repo).values()} == {1, 3})
    proc = run_mux("wait", "--any", "x", "y", "--for", "idle", "--timeout", "30", cwd=repo, check=False)
    assert proc.returncode == 1 and "will not become idle" in proc.stderr
    every = json.loads(run_mux("wait", "x", "y", "--for", "exited", "--json", cwd=repo).stdout)
    assert [r["name"] for r in every["reached"]] == ["x", "y"]


def launches(repo: Path, name: str) -> list[str]:
    """The launch id of each start of the task's agent, oldest first, as its spawns recorded them."""
    lines = (repo / ".git" / "mux" / "events" / f"{name}.jsonl").read_text().splitlines()
    return [record.get("launch", "") for line in lines if (record := json.loads(line))["name"] == "spawn"]


def fire_hook(repo: Path, name: str, event: str, launch: str | None) -> None:
    """A Claude-style hook event for the task, as the agent of that launch (None: one with no MUX_LAUNCH) sends it."""
    env = {**os.environ, "MUX_TASK": name, "MUX_STATE_DIR": str(repo / ".git" / "mux")}
    if launch is not None:
        env["MUX_LAUNCH"] = launch
    payload = json.dumps({"hook_event_name": event}).encode()
    hook = [sys.executable, "-P", "-m", "muxagent", "_hook", "claude"]
    subprocess.run(hook, input=payload, env=env, check=True, timeout=10)


def test_hook_events_of_an_earlier_launch_or_a_hand_started_agent_do_not_move_the_state(
    repo: Path, fake_profile: Path
) -> None:
    profile_with(fake_profile, fake_profile.parent / "fakehook.toml", hooks="claude")
    run_mux("new", "h", "-a", "fakehook", cwd=repo)
    wait_until(lambda: state(repo, "h") == "idle")
    run_mux("send", "h", "exit 0", cwd=repo)
    wait_until(lambda: state(repo, "h") == "exited")
    run_mux("restart", "h", cwd=repo)
    wait_until(lambda: state(repo, "h") == "idle")
    earlier, current = launches(repo, "h")
    assert earlier and current and earlier != current
    for stale in (earlier, None, "not-a-launch-of-mux"):
        fire_hook(repo, "h", "PermissionRequest", stale)
        row = mux_ls(repo)["h"]
        assert (row["state"], row["reason"]) != ("waiting", "hook: PermissionRequest"), stale
    fire_hook(repo, "h", "PermissionRequest", current)  # the same event from the agent running now
    assert wait_until(lambda: state(repo, "h") == "waiting")


def test_each_start_of_the_agent_gets_its_own_launch_id_in_its_environment(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "env_agent.py"
    script.write_text("import os, time\nprint('launch=' + os.environ.get('MUX_LAUNCH', ''))\ntime.sleep(600)\n")
    run_mux("new", "e", "-a", f"{sys.executable} {script}", cwd=repo)
    shown = wait_until(lambda: [w for w in screen(repo, "e").split() if w.startswith("launch=")])
    assert shown == [f"launch={launches(repo, 'e')[-1]}"] and len(shown[0]) > len("launch=")


def help_commands(cwd: Path) -> set[str]:
    text = run_mux("--help", cwd=cwd).stdout
    listed = text.split("\nCommands:\n", 1)[1]
    return {line.split()[0] for line in listed.splitlines() if line.startswith("  ") and line.split()}


def test_guide_names_only_commands_and_options_mux_has(tmp_path: Path) -> None:
    text = run_mux("guide", cwd=tmp_path).stdout  # outside a repository too
    snippets = re.findall(r"`(mux [^`]*)`", text)
    named = {snippet.split()[1] for snippet in snippets}
    # The whole round: start, wait, review, merge, clean up.
    assert {"new", "wait", "diff", "merge", "rm"} <= named
    assert named <= help_commands(tmp_path)
    for snippet in snippets:
        command, options = snippet.split()[1], [w for w in snippet.split() if w.startswith("-")]
        usage = run_mux(command, "--help", cwd=tmp_path).stdout
        assert all(option in usage for option in options), snippet
    assert "--any" in text and "[mux] sub-task" in text


def test_guide_leaves_out_an_item_whose_command_this_mux_lacks() -> None:
    every = guide.named_commands(guide.GUIDE)
    assert guide.guide(every) == guide.GUIDE
    without_merge = guide.guide(every - {"merge"})
    assert "`mux merge" not in without_merge and "`mux diff NAME`" in without_merge
