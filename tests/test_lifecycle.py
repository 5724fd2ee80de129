"""`mux new`, `ls`, `send`, `peek`, `diff` end to end on a real tmux server and real git repos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import libtmux
import pytest
from conftest import (
    FAKE_AGENT,
    git,
    make_repo,
    modules_imported,
    mux_ls,
    new_task,
    profile_with,
    run_mux,
    wait_until,
    window_task,
)

pytestmark = pytest.mark.usefixtures("fake_profile")

JSON_FIELDS = {
    "name",
    "agent",
    "state",
    "branch",
    "base",
    "worktree",
    "window",
    "ahead",
    "behind",
    "dirty_files",
    "added_lines",
    "removed_lines",
    "created",
    "last_activity",
    "exit_status",
    "conflicts",
    "reason",
}


def state_of(repo: Path, name: str) -> str:
    return str(mux_ls(repo)[name]["state"])


def screen(repo: Path, name: str) -> str:
    return run_mux("peek", name, cwd=repo).stdout


def test_new_creates_worktree_branch_and_window_and_ls_reports_it(repo: Path, server: libtmux.Server) -> None:
    out = run_mux("new", "feat", "-a", "fake", cwd=repo).stdout
    worktree = repo.parent / "proj.worktrees" / "feat"
    assert str(worktree) in out
    assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD").strip() == "mux/feat"
    row = wait_until(lambda: (r := mux_ls(repo)["feat"]) and r["state"] == "idle" and r)
    assert set(row) >= JSON_FIELDS
    assert row["branch"] == "mux/feat" and row["base"] == "main" and row["worktree"] == str(worktree)
    assert row["window"].startswith("@")
    (window,) = server.windows.filter(window_id=row["window"])
    assert window_task(window) == "feat" and window.show_option("remain-on-exit") is True
    assert row["exit_status"] is None and row["conflicts"] == []
    assert (row["ahead"], row["behind"], row["dirty_files"]) == (0, 0, 0)
    # The agent runs in the worktree with the task's environment.
    text = screen(repo, "feat")
    assert f"fake agent ready in {worktree} task=feat port={row['port']}" in text
    assert row["reason"] == r"screen: fake>\s*\Z"


def gate_checkout(repo: Path, gate: Path) -> None:
    """Commit a file whose checkout (a required smudge filter) blocks until `gate` exists."""
    (repo / ".gitattributes").write_text("*.gated filter=gate\n")
    (repo / "big.gated").write_text("payload\n")
    git(repo, "add", ".gitattributes", "big.gated")
    git(repo, "commit", "-q", "-m", "gated file")
    git(repo, "config", "filter.gate.smudge", f"sh -c 'while [ ! -e {gate} ]; do sleep 0.02; done; cat'")
    git(repo, "config", "filter.gate.clean", "cat")
    git(repo, "config", "filter.gate.required", "true")


def test_new_returns_while_its_window_checks_out_and_the_agent_starts_after(repo: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate_checkout(repo, gate)
    out = run_mux("new", "slow", "-a", "fake", "-p", "write hello.txt hi", cwd=repo).stdout
    worktree = repo.parent / "proj.worktrees" / "slow"
    assert str(worktree) in out
    row = mux_ls(repo)["slow"]
    assert (row["state"], row["reason"], row["dirty_files"]) == ("starting", "checking out", None)
    wait_until(lambda: "mux: checking out mux/slow" in screen(repo, "slow"))
    assert not (worktree / "hello.txt").exists()  # the agent waits for its files
    (repo / "base.txt").write_text("the base moves on\n")
    git(repo, "add", "base.txt")
    git(repo, "commit", "-q", "-m", "base moves")
    for command in (("diff", "slow"), ("merge", "slow"), ("sync", "slow")):
        refused = run_mux(*command, cwd=repo, check=False)
        assert refused.returncode == 1 and "has no files yet" in refused.stderr and "Traceback" not in refused.stderr
    refused = run_mux("send", "slow", "write early.txt x", cwd=repo, check=False)
    assert refused.returncode == 1 and "--when-idle" in refused.stderr
    run_mux("send", "slow", "--when-idle", "write later.txt x", cwd=repo)
    gate.touch()
    wait_until(lambda: (worktree / "later.txt").exists(), timeout=20)
    assert (worktree / "hello.txt").exists() and not (worktree / "early.txt").exists()
    assert "fake agent ready" in screen(repo, "slow") and "checking out" not in screen(repo, "slow")
    assert (worktree / "big.gated").read_text() == "payload\n" and (worktree / "README.md").exists()
    row = wait_until(lambda: (r := mux_ls(repo)["slow"])["dirty_files"] == 2 and r)
    assert row["reason"] != "checking out" and row["added_lines"] == 2


def test_a_failed_checkout_leaves_a_task_to_look_at_restart_or_remove(repo: Path, tmp_path: Path) -> None:
    gate_checkout(repo, tmp_path / "gate")
    git(repo, "config", "filter.gate.smudge", "false")
    run_mux("new", "broken", "-a", "fake", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["broken"])["state"] == "exited" and r)
    assert row["reason"] == "checkout failed (exit 1)"
    assert "mux: the checkout failed" in screen(repo, "broken")
    git(repo, "config", "filter.gate.smudge", "cat")
    run_mux("restart", "broken", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["broken"])["state"] == "idle" and r)
    assert (Path(row["worktree"]) / "big.gated").read_text() == "payload\n" and row["dirty_files"] == 0
    git(repo, "config", "filter.gate.smudge", "false")
    run_mux("new", "again", "-a", "fake", cwd=repo)
    wait_until(lambda: mux_ls(repo)["again"]["state"] == "exited")
    run_mux("rm", "again", cwd=repo)  # nothing of anyone's is in it: no --force needed
    assert "again" not in mux_ls(repo) and "mux/again" not in git(repo, "branch", "--list")


def test_a_file_put_in_a_worktree_still_checking_out_is_work_rm_keeps(repo: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate_checkout(repo, gate)
    run_mux("new", "early", "-a", "fake", cwd=repo)
    worktree = repo.parent / "proj.worktrees" / "early"
    (worktree / "mine.txt").write_text("mine\n")
    refused = run_mux("rm", "early", cwd=repo, check=False)
    assert refused.returncode == 1 and "mine.txt" in refused.stderr and "README.md" not in refused.stderr
    run_mux("rm", "--force", "early", cwd=repo)
    assert not worktree.exists()
    gate.touch()
    run_mux("restore", "early", cwd=repo)
    assert (worktree / "mine.txt").read_text() == "mine\n"
    assert (worktree / "README.md").read_text() == "hello\n" and (worktree / "big.gated").read_text() == "payload\n"
    assert git(worktree, "status", "--porcelain") == "?? mine.txt\n"


def test_the_post_checkout_hook_runs_in_the_new_worktree(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text('#!/bin/sh\necho "$PWD $1 $3" > post-checkout.txt\n')
    hook.chmod(0o755)
    worktree = new_task(repo, "hooked", "-a", "fake")
    record = wait_until(lambda: (worktree / "post-checkout.txt").exists() and (worktree / "post-checkout.txt"))
    assert record.read_text() == f"{worktree} {'0' * 40} 1\n"


def test_the_windows_checkout_never_overwrites_a_file_put_there_first(repo: Path) -> None:
    from muxagent.git import repository, worktrees

    worktree = repo.parent / "early"
    git(repo, "worktree", "add", "-q", "--no-checkout", "-b", "early", str(worktree))
    (repository.git_dir(worktree) / worktrees.CHECKOUT_PENDING).touch()
    (worktree / "README.md").write_text("mine\n")
    argv = worktrees.pane_command(worktree, ["true"])
    proc = subprocess.run(argv, cwd=worktree, capture_output=True, text=True)
    assert proc.returncode == 1 and "README.md" in proc.stderr and "the checkout failed" in proc.stderr
    assert (worktree / "README.md").read_text() == "mine\n" and worktrees.checkout_pending(worktree)


def test_prompt_argument_reaches_the_agent_and_changes_are_counted(repo: Path) -> None:
    run_mux("new", "hello", "-a", "fake", "-p", "write hello.txt hi there", cwd=repo)
    worktree = repo.parent / "proj.worktrees" / "hello"
    wait_until(lambda: (worktree / "hello.txt").exists())
    assert (worktree / "hello.txt").read_text() == "hi there\n"
    assert not (repo / "hello.txt").exists()
    row = wait_until(lambda: (r := mux_ls(repo)["hello"])["dirty_files"] == 1 and r)
    assert (row["added_lines"], row["removed_lines"]) == (1, 0)


def test_prompt_is_pasted_when_the_profile_takes_none_on_the_command_line(repo: Path, fake_profile: Path) -> None:
    profile_with(fake_profile, prompt_args=None)
    prompt_file = repo.parent / "prompt.txt"
    prompt_file.write_text("write pasted.txt from a file")
    run_mux("new", "paste", "-a", "fake", "--prompt-file", str(prompt_file), cwd=repo)
    worktree = repo.parent / "proj.worktrees" / "paste"
    wait_until(lambda: (worktree / "pasted.txt").exists())
    assert (worktree / "pasted.txt").read_text() == "from a file\n"


def test_states_follow_the_agent_working_waiting_idle_exited(repo: Path) -> None:
    run_mux("new", "st", "-a", "fake", cwd=repo)
    wait_until(lambda: state_of(repo, "st") == "idle")
    run_mux("send", "st", "busy 4", cwd=repo)
    wait_until(lambda: state_of(repo, "st") == "working")
    wait_until(lambda: state_of(repo, "st") == "idle", timeout=15)
    run_mux("send", "st", "ask", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["st"])["state"] == "waiting" and r)
    assert "y/n" in row["reason"]
    run_mux("send", "st", "y", cwd=repo)
    wait_until(lambda: state_of(repo, "st") == "idle")
    run_mux("send", "st", "exit 3", cwd=repo)
    # tmux marks the pane dead when its output closes and learns the status a moment later.
    row = wait_until(lambda: (r := mux_ls(repo)["st"])["exit_status"] is not None and r)
    assert (row["state"], row["exit_status"]) == ("exited", 3)
    assert row["reason"] == "pane dead (exit 3)"


def test_unprofiled_command_line_runs_with_generic_detection(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "asker.py"
    script.write_text(
        "import sys, time\n"
        "for i in range(80):\n    print(f'step {i}', flush=True)\n    time.sleep(0.1)\n"
        "input('press Enter to go on ')\n"
        "answer = input('Overwrite file? (y/n) ')\nsys.exit(5)\n"
    )
    run_mux("new", "generic", "-a", f"{sys.executable} {script}", cwd=repo)
    printing = wait_until(lambda: (r := mux_ls(repo)["generic"])["state"] == "working" and r)
    assert printing["reason"].startswith("pane output")
    quiet = wait_until(lambda: (r := mux_ls(repo)["generic"])["state"] == "idle" and r, timeout=15)
    assert quiet["reason"].startswith("pane quiet")
    run_mux("send", "generic", "", cwd=repo)
    wait_until(lambda: state_of(repo, "generic") == "waiting")
    run_mux("send", "generic", "y", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["generic"])["exit_status"] is not None and r)
    assert (row["state"], row["exit_status"]) == ("exited", 5)


def test_send_is_verbatim(repo: Path) -> None:
    run_mux("new", "echo", "-a", "fake", cwd=repo)
    wait_until(lambda: state_of(repo, "echo") == "idle")
    for text in ("C-c", "$(id)", "#{pane_id}", "Enter", "'quoted' \"double\" `tick`"):
        run_mux("send", "echo", text, cwd=repo)

        def echoed(text: str = text) -> bool:
            return f"got: {text}" in screen(repo, "echo")

        wait_until(echoed)


def test_peek_strips_escape_sequences_and_shows_scrollback(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "colour.py"
    script.write_text(
        "import time\nfor i in range(200): print(f'line {i}')\n"
        "print('\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07end')\ntime.sleep(600)\n"
    )
    run_mux("new", "colour", "-a", f"{sys.executable} {script}", cwd=repo)
    wait_until(lambda: "red end" in screen(repo, "colour"))
    visible = screen(repo, "colour")
    assert "\x1b" not in visible and "\x07" not in visible
    assert "line 0\n" not in visible
    longer = run_mux("peek", "colour", "-n", "300", cwd=repo).stdout
    assert "line 0\n" in longer


def test_diff_shows_committed_uncommitted_and_untracked(repo: Path) -> None:
    worktree = new_task(repo, "d", "-a", "fake")
    (worktree / "README.md").write_text("hello\nmore\n")
    git(worktree, "commit", "-qam", "more")
    (worktree / "README.md").write_text("hello\nmore\nuncommitted\n")
    (worktree / "new.txt").write_text("brand new\n")
    out = run_mux("diff", "d", cwd=repo).stdout
    assert "+more" in out and "+uncommitted" in out and "+brand new" in out
    stat = run_mux("diff", "d", "--stat", cwd=repo).stdout
    assert "README.md" in stat and "new.txt" in stat
    # `ls` shows the monitor's view, whose changes follow an edit within 2 s (test_live_view): not at once. On a
    # loaded machine the first `ls` after the edits still showed (0, 0, 0).
    wait_until(lambda: ((r := mux_ls(repo)["d"])["ahead"], r["added_lines"], r["dirty_files"]) == (1, 3, 2), timeout=5)


def test_behind_counts_new_commits_on_the_base(repo: Path) -> None:
    run_mux("new", "b", "-a", "fake", cwd=repo)
    (repo / "other.txt").write_text("x\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-qm", "base moves")
    assert mux_ls(repo)["b"]["behind"] == 1


def test_base_option_and_mux_works_from_inside_a_worktree(repo: Path) -> None:
    git(repo, "branch", "release")
    run_mux("new", "r", "-a", "fake", "--base", "release", cwd=repo)
    worktree = repo.parent / "proj.worktrees" / "r"
    rows = mux_ls(worktree / ".")
    assert rows["r"]["base"] == "release"
    run_mux("new", "child", "-a", "fake", cwd=worktree)
    assert set(mux_ls(repo)) == {"r", "child"}


def test_ls_table_is_human_readable(repo: Path) -> None:
    run_mux("new", "t1", "-a", "fake", cwd=repo)
    out = run_mux("ls", cwd=repo).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "AGENT", "STATE"]
    assert row.split()[:2] == ["t1", "fake"]
    assert "\x1b" not in out  # not a terminal: no colour


def test_repo_path_with_spaces_quotes_and_hash_works_end_to_end(tmp_path: Path) -> None:
    odd = make_repo(tmp_path / 'it\'s a "repo" #1 $(touch pwned)')
    run_mux("new", "odd", "-a", "fake", "-p", "write out.txt ok", cwd=odd)
    worktree = tmp_path / 'it\'s a "repo" #1 $(touch pwned).worktrees' / "odd"
    wait_until(lambda: (worktree / "out.txt").exists())
    assert mux_ls(odd)["odd"]["worktree"] == str(worktree)
    run_mux("send", "odd", "hi", cwd=odd)
    wait_until(lambda: "got: hi" in screen(odd, "odd"))
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    run_mux("rm", "--force", "odd", cwd=odd)
    assert not worktree.exists()


def test_agents_lists_profiles_and_install_state(repo: Path) -> None:
    rows = {r["name"]: r for r in json.loads(run_mux("agents", "--json", cwd=repo).stdout)}
    assert {"claude", "codex", "opencode", "aider", "gemini", "shell", "fake"} <= set(rows)
    assert rows["fake"]["path"] == sys.executable
    assert rows["fake"]["command"] == [sys.executable, str(FAKE_AGENT)]


# libtmux is not here: no muxagent module imports it (test_layers), the tests alone use it.
HEAVY_MODULES = {"git", "watchdog", "pydantic", "rich"}


def imported_top_modules(*args: str, cwd: Path) -> set[str]:
    """Top-level packages a mux command imports (the command succeeding)."""
    return {name.split(".")[0] for name in modules_imported(["-m", "muxagent", *args], cwd=cwd)}


# Verbs of other commands: importing every one of them on each run cost 90 ms of every `mux` command (measured
# here, --version, ls and agents alike), most of a command's own time.
OTHER_VERBS = {f"muxagent.commands.{verb}" for verb in ("compare", "doctor", "gc", "keep", "merge", "restore", "sync")}


def test_new_and_ls_import_no_heavy_library(repo: Path) -> None:
    """Speed is a feature: the commands typed all day leave GitPython, watchdog and pydantic unloaded, and the
    verbs of the other commands."""
    made = modules_imported(["-m", "muxagent", "new", "light", "-a", "fake", "-p", "hi"], cwd=repo)
    assert not {name.split(".")[0] for name in made} & HEAVY_MODULES and not made & OTHER_VERBS
    wait_until(lambda: mux_ls(repo)["light"]["reason"] != "checking out")
    (repo.parent / "proj.worktrees" / "light" / "wip.txt").write_text("wip\n")
    assert not imported_top_modules("ls", "--json", cwd=repo) & HEAVY_MODULES
    # A command of the full CLI (no fast path answers `agents`): none of the other commands' verbs either.
    assert not modules_imported(["-m", "muxagent", "agents"], cwd=repo) & (OTHER_VERBS | {"muxagent.commands.create"})
    # The live view may take up to 2 s to count a file edited behind mux's back (issue 14's bound).
    wait_until(lambda: mux_ls(repo)["light"]["dirty_files"] == 1, timeout=5)
