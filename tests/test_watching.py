"""Hooks through mux, `mux wait`, queued prompts, the monitor's window marks, `mux restart`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import libtmux
import pytest
from conftest import mux_ls, profile_with, run_mux, wait_until, window_task

from muxagent.monitor import daemon

pytestmark = pytest.mark.usefixtures("fake_profile")


@pytest.fixture
def hooked_profile(fake_profile: Path) -> str:
    """The fake agent wired like Claude Code: mux passes it `--settings` and it runs the hooks found there."""
    profile_with(fake_profile, fake_profile.parent / "fakehook.toml", hooks="claude")
    return "fakehook"


def state(repo: Path, name: str) -> str:
    return str(mux_ls(repo)[name]["state"])


def screen(repo: Path, name: str) -> str:
    return run_mux("peek", name, cwd=repo).stdout


def window_names(server: libtmux.Server) -> dict[str, str]:
    """Task name -> the name of its window, as the monitor marks it."""
    return {task: str(window.window_name) for window in server.windows if (task := window_task(window))}


def test_hook_events_decide_the_state_and_say_so(repo: Path, hooked_profile: str) -> None:
    run_mux("new", "h", "-a", hooked_profile, "-p", "busy 2", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["h"])["state"] == "working" and r)
    assert row["reason"].startswith(("hook: ", "screen: working"))
    row = wait_until(lambda: (r := mux_ls(repo)["h"])["reason"] == "hook: Stop" and r, timeout=20)
    assert row["state"] == "idle"
    run_mux("send", "h", "ask", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["h"])["state"] == "waiting" and r)
    assert "PermissionRequest" in row["reason"] or "y/n" in row["reason"]
    run_mux("send", "h", "y", cwd=repo)
    wait_until(lambda: mux_ls(repo)["h"]["reason"] == "hook: Stop")


def test_a_turn_ended_without_a_hook_stays_idle_while_its_prompt_redraws(repo: Path, hooked_profile: str) -> None:
    """As Claude Code after Esc: no Stop, an idle prompt that keeps redrawing; the old hook must not come back."""
    run_mux("new", "i", "-a", hooked_profile, "-p", "interrupted 30", cwd=repo)
    wait_until(lambda: mux_ls(repo)["i"]["state"] == "idle", timeout=20)
    start = time.monotonic()
    seen = set()
    while time.monotonic() - start < 6:
        row = mux_ls(repo)["i"]
        seen.add((row["state"], row["reason"].partition(" (hook")[0]))
        time.sleep(0.25)
    assert seen == {("idle", r"screen: fake>\s*\Z")}


def test_wait_returns_when_idle_and_times_out_with_exit_4(repo: Path) -> None:
    run_mux("new", "w", "-a", "fake", "-p", "busy 3", cwd=repo)
    wait_until(lambda: state(repo, "w") == "working")
    timed_out = run_mux("wait", "w", "--for", "idle", "--timeout", "0.5", cwd=repo, check=False)
    assert timed_out.returncode == 4
    assert "timed out" in timed_out.stderr and "w is working" in timed_out.stderr
    worktree = repo.parent / "proj.worktrees" / "w"
    done = run_mux("wait", "w", "--for", "idle", "--timeout", "30", cwd=worktree)  # from inside the worktree
    assert done.stdout.startswith("w: idle")


def test_wait_for_idle_on_an_exited_task_fails_at_once(repo: Path) -> None:
    run_mux("new", "gone", "-a", "fake", "-p", "exit 2", cwd=repo)
    wait_until(lambda: mux_ls(repo)["gone"]["exit_status"] == 2)
    proc = run_mux("wait", "gone", "--for", "idle", "--timeout", "30", cwd=repo, check=False)
    assert proc.returncode == 1 and "will not become idle" in proc.stderr
    assert run_mux("wait", "gone", "--for", "exited", cwd=repo).returncode == 0


def test_queued_prompts_are_delivered_in_order_exactly_once(repo: Path) -> None:
    run_mux("new", "q", "-a", "fake", "-p", "busy 8", cwd=repo)  # outlasts the two sends below on a loaded machine
    worktree = repo.parent / "proj.worktrees" / "q"
    wait_until(lambda: state(repo, "q") == "working")
    assert "#1" in run_mux("send", "q", "--when-idle", "write first.txt one", cwd=repo).stderr
    assert "#2" in run_mux("send", "q", "--when-idle", "write second.txt two", cwd=repo).stderr
    assert not (worktree / "first.txt").exists()  # still busy: nothing typed into its turn
    wait_until(lambda: (worktree / "second.txt").exists(), timeout=30)
    assert (worktree / "first.txt").stat().st_mtime <= (worktree / "second.txt").stat().st_mtime
    text = screen(repo, "q")
    assert text.count("wrote first.txt") == 1 and text.count("wrote second.txt") == 1
    assert text.index("wrote first.txt") < text.index("wrote second.txt")


def test_prompts_queued_for_a_removed_task_never_reach_a_new_one_of_the_same_name(repo: Path) -> None:
    run_mux("new", "again", "-a", "fake", "-p", "busy 30", cwd=repo)
    wait_until(lambda: state(repo, "again") == "working")
    run_mux("send", "again", "--when-idle", "meant for the old task", cwd=repo)
    run_mux("rm", "--force", "again", cwd=repo)
    run_mux("new", "again", "-a", "fake", cwd=repo)
    wait_until(lambda: state(repo, "again") == "idle")
    run_mux("send", "again", "--when-idle", "meant for the new task", cwd=repo)
    # Queued prompts go out in order: had the old one survived, it would have been typed first.
    wait_until(lambda: "got: meant for the new task" in screen(repo, "again"), timeout=20)
    assert "meant for the old task" not in screen(repo, "again")


def test_queued_prompt_reaches_an_idle_agent_within_two_seconds(repo: Path) -> None:
    run_mux("new", "fast", "-a", "fake", cwd=repo)
    wait_until(lambda: state(repo, "fast") == "idle")
    run_mux("send", "fast", "--when-idle", "hello queue", cwd=repo)
    queued = time.monotonic()
    wait_until(lambda: "got: hello queue" in screen(repo, "fast"))
    assert time.monotonic() - queued < 2.5


def test_monitor_marks_window_names_and_leaves_with_the_last_task(repo: Path, server: libtmux.Server) -> None:
    run_mux("new", "m", "-a", "fake", cwd=repo)
    wait_until(lambda: window_names(server).get("m") == "m ✓")
    run_mux("send", "m", "ask", cwd=repo)
    wait_until(lambda: window_names(server).get("m") == "m ?")

    def monitor_bell() -> bool:
        return any(
            w.window_bell_flag == "1" and str(w.session_name).endswith(daemon.SESSION_SUFFIX) for w in server.windows
        )

    wait_until(monitor_bell)
    run_mux("send", "m", "n", cwd=repo)
    run_mux("rm", "m", cwd=repo)

    wait_until(
        lambda: not any(str(s.session_name).endswith(daemon.SESSION_SUFFIX) for s in server.sessions), timeout=20
    )


def test_restart_brings_back_an_exited_agent_in_its_worktree(repo: Path) -> None:
    run_mux("new", "r", "-a", "fake", cwd=repo)
    wait_until(lambda: state(repo, "r") == "idle")
    refused = run_mux("restart", "r", cwd=repo, check=False)
    assert refused.returncode == 1 and "only exited or missing" in refused.stderr
    run_mux("send", "r", "exit 3", cwd=repo)
    wait_until(lambda: mux_ls(repo)["r"]["exit_status"] == 3)
    run_mux("restart", "r", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["r"])["state"] == "idle" and r)
    assert row["exit_status"] is None
    run_mux("send", "r", "write again.txt back", cwd=repo)
    wait_until(lambda: (repo.parent / "proj.worktrees" / "r" / "again.txt").exists())


def test_restart_all_after_the_tmux_server_died(repo: Path, tmux_socket: str) -> None:
    for name in ("a", "b"):
        run_mux("new", name, "-a", "fake", cwd=repo)
    subprocess.run(["tmux", "-L", tmux_socket, "kill-server"], check=True)
    wait_until(lambda: {r["state"] for r in mux_ls(repo).values()} == {"missing"})
    subprocess.run(["rm", "-rf", str(repo.parent / "proj.worktrees" / "b")], check=True)
    out = run_mux("restart", "--all", cwd=repo).stdout
    assert "restarted a" in out and "not restarted b" in out and "mux restore b" in out
    wait_until(lambda: state(repo, "a") == "idle")
    assert state(repo, "b") == "missing"


def test_restart_uses_the_profiles_resume_args(repo: Path, fake_profile: Path) -> None:
    profile_with(fake_profile, resume_args=["resumed"])
    run_mux("new", "res", "-a", "fake", "-p", "exit 0", cwd=repo)
    wait_until(lambda: mux_ls(repo)["res"]["exit_status"] == 0)
    run_mux("restart", "res", cwd=repo)
    wait_until(lambda: "got: resumed" in screen(repo, "res"))


def test_peek_and_ls_survive_invalid_utf8_and_escape_floods(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "noise.py"
    script.write_text(
        "import os, sys, time\n"
        "os.write(1, b'\\xff\\xfe bad bytes \\x1b[2J\\x1b]52;c;aGk=\\x07 \\x1bP+q\\x1b\\\\ tail\\n')\n"
        "time.sleep(600)\n"
    )
    run_mux("new", "noise", "-a", f"{sys.executable} {script}", cwd=repo)
    wait_until(lambda: "tail" in screen(repo, "noise"))
    text = screen(repo, "noise")
    assert "\x1b" not in text and "\x07" not in text
    assert json.loads(run_mux("ls", "--json", cwd=repo).stdout)[0]["name"] == "noise"


def test_monitor_sees_file_changes_the_moment_they_happen(repo: Path) -> None:
    run_mux("new", "fs", "-a", "fake", cwd=repo)
    wait_until(lambda: "watching 1 worktree" in run_mux("doctor", cwd=repo).stdout, timeout=20)
    assert mux_ls(repo)["fs"]["last_change"] is None
    (repo.parent / "proj.worktrees" / "fs" / "notes.md").write_text("hi\n")
    row = wait_until(lambda: (r := mux_ls(repo)["fs"])["last_change"] and r, timeout=5)
    assert row["dirty_files"] == 1


def test_git_churn_is_not_a_change(repo: Path) -> None:
    from muxagent.monitor.watch import ChangeWatcher, in_git_dir

    worktree = repo.parent / "plain"
    worktree.mkdir()
    (worktree / ".git").mkdir()
    with ChangeWatcher(ignore=in_git_dir) as watcher:
        assert watcher.watch("t", worktree) is None
        assert watcher.watch("gone", repo.parent / "no-such-dir") is not None
        (worktree / ".git" / "index.lock").write_text("x")
        assert not watcher.wait(0.5)
        (worktree / "real.txt").write_text("x")
        assert watcher.wait(5)
        assert watcher.take_changed() == {"t"}


def write_trust_profile(name: str, *args: str) -> str:
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    script = Path(__file__).parent / "trust_dialog.py"
    (agents / f"{name}.toml").write_text(
        f"command = {json.dumps([sys.executable, str(script), *args])}\n"
        "auto_trust = true\n"
        "trust_choice = 'Yes, I trust this folder'\n"
        'hooks = "claude"\n'
        "[status]\n"
        "trust = ['Is this a project you created or one you trust']\n"
        "idle = ['ready']\n"
    )
    return name


@pytest.fixture
def trust_profile() -> str:
    return write_trust_profile("faketrust")


def trust_main_checkout_in_claude(repo: Path) -> None:
    claude_json = Path(os.environ["HOME"]) / ".claude.json"
    claude_json.write_text(json.dumps({"projects": {str(repo): {"hasTrustDialogAccepted": True}}}))


def test_trust_dialog_is_answered_when_the_main_checkout_is_trusted(repo: Path, trust_profile: str) -> None:
    trust_main_checkout_in_claude(repo)
    run_mux("new", "tr", "-a", trust_profile, cwd=repo)
    wait_until(lambda: "trusted; ready" in screen(repo, "tr"), timeout=20)
    wait_until(lambda: state(repo, "tr") == "idle")  # the monitor answered: `ls` shows its next view
    assert '"action":"auto-trust"' in (repo / ".git" / "mux" / "journal.jsonl").read_text()


def test_a_trust_answer_the_agent_lost_is_given_again(repo: Path) -> None:
    profile = write_trust_profile("dropskey", "--drop-first-enter")
    trust_main_checkout_in_claude(repo)
    run_mux("new", "tr", "-a", profile, cwd=repo)
    wait_until(lambda: "trusted; ready" in screen(repo, "tr"), timeout=30)
    assert (repo / ".git" / "mux" / "journal.jsonl").read_text().count('"action":"auto-trust"') == 2


def test_trust_dialog_waits_for_the_user_when_the_main_checkout_is_not_trusted(repo: Path, trust_profile: str) -> None:
    run_mux("new", "tr", "-a", trust_profile, cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["tr"])["state"] == "waiting" and r)
    assert row["reason"] == "trust dialog: Is this a project you created or one you trust"
    wait_until(lambda: "watching 1 worktree" in run_mux("doctor", cwd=repo).stdout, timeout=20)
    assert "❯ No, exit" in screen(repo, "tr")  # the monitor has looked and left it alone


def test_the_monitor_outlives_a_notify_send_that_cannot_run(
    repo: Path, tmp_path: Path, server: libtmux.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notify-send on PATH that cannot start (a bad interpreter line) fails the alert: queued prompts still go."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "notify-send"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    run_mux("new", "t", "-a", "fake", "-p", "busy 2", cwd=repo)  # working, then idle: an alert
    run_mux("send", "t", "--when-idle", "write after.txt done", cwd=repo)
    worktree = Path(mux_ls(repo)["t"]["worktree"])
    wait_until(lambda: (worktree / "after.txt").is_file(), timeout=30)
    (monitor,) = server.sessions.filter(session_name=f"{mux_ls(repo)['t']['session']}-monitor")
    (pane,) = monitor.panes
    assert "notifications off" in "\n".join(pane.capture_pane())  # the alert was tried, and failed
    assert wait_until(lambda: window_names(server).get("t", "").endswith("✓"), timeout=10)
