"""A repository's content (an untrusted `.mux.toml`), an agent's screen or a hook must never run code or attack
the terminal. The promises this module holds, each against a real repo, tmux server and `mux` process:

| promise | tests |
| --- | --- |
| an untrusted worktree_dir keeps worktrees in the default folder or below (symlinks followed) | test_*_worktree_* |
| no screen pattern stalls a command (RE2, linear time) | test_a_catastrophic_pattern_*, test_a_pattern_re2_cannot_* |
| nor do many or big ones (bounded size and count) | test_patterns_too_costly_* |
| no copy/symlink glob or .worktreeinclude line stalls `mux new` | test_a_copy_glob_*, test_a_worktreeinclude_* |
| no escape from a repo, a screen or a hook reaches a terminal or a notification | test_escapes_*, test_clean_* |
| the status line never turns a task's text into a tmux style or command | test_status_line_doubles_* |
| a file name from a branch reaches an agent's input without escapes (`sync --ask`) | test_a_conflicting_file_name_* |
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, make_repo, mux_ls, new_task, recording_notify_send, run_mux, run_mux_on_terminal, wait_until

from muxagent import render
from muxagent.model import State, Task, TaskReport, TaskStatus

pytestmark = pytest.mark.usefixtures("fake_profile")

# What a terminal acts on: OSC 52 sets the clipboard, a C1 CSI (8-bit) colours, a bidi override reverses the rest.
OSC52 = "\x1b]52;c;SGVsbG8=\x07"
ATTACKS = (OSC52, "\x1b]52;c;SGk=\x1b\\", "\x1b[2J", "\x9b31m", "\x9d0;title\x9c", "\x1bc", "\u202e", "\x07")
CONTROLS = ("\x1b", "\x07", "\x9b", "\x9c", "\x9d", "\u202e")
# Exponential for a backtracking engine: 178 ms on a 20-character line with Python's re, doubling with each more.
HOSTILE = r"(?:.|[^\n])*ZZZ"
DEADLINE = 20.0


def write_repo_config(repo: Path, text: str) -> None:
    """A .mux.toml in the main checkout that nobody ran `mux trust` on, as a clone brings it."""
    (repo / ".mux.toml").write_text(text)


def screen(repo: Path, name: str) -> str:
    return run_mux("peek", name, cwd=repo).stdout


# ---------------------------------------------------------------------------------------------- 11: worktree_dir


def test_an_untrusted_worktree_dir_cannot_check_a_clone_out_where_vim_runs_it() -> None:
    home = Path.home()
    clone = make_repo(home / "clone")  # a clone directly in $HOME: ~/.vim is in the folder holding it
    plugin = clone / "start" / "evil" / "plugin" / "x.vim"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("call system('touch ~/pwned')\n")
    write_repo_config(clone, 'worktree_dir = "../.vim/pack/{task}"\n')
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "plugin")
    proc = run_mux("new", "t", "-a", "fake", cwd=clone)
    assert "worktree_dir" in proc.stderr and "mux trust" in proc.stderr
    assert not (home / ".vim").exists()
    assert Path(mux_ls(clone)["t"]["worktree"]) == home / "clone.worktrees" / "t"
    run_mux("trust", "--yes", cwd=clone)  # approved, it applies as written
    assert Path(new_task(clone, "u", "-a", "fake")) == home / ".vim" / "pack" / "u"


def test_an_untrusted_worktree_dir_below_the_default_folder_applies(repo: Path) -> None:
    write_repo_config(repo, 'worktree_dir = "../{repo}.worktrees/agents/{task}"\n')
    proc = run_mux("new", "t", "-a", "fake", cwd=repo)
    assert "not trusted" not in proc.stderr
    assert Path(mux_ls(repo)["t"]["worktree"]) == repo.parent / "proj.worktrees" / "agents" / "t"


def test_an_untrusted_worktree_dir_through_a_tracked_symlink_stays_in_the_default_folder(
    repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "autostart"
    outside.mkdir()
    (repo / "link").symlink_to(outside)  # tracked: every task's worktree has it
    git(repo, "add", "link")
    git(repo, "commit", "-q", "-m", "a link")
    new_task(repo, "a", "-a", "fake")
    write_repo_config(repo, 'worktree_dir = "../{repo}.worktrees/a/link/{task}"\n')
    proc = run_mux("new", "b", "-a", "fake", cwd=repo)
    assert "worktree_dir" in proc.stderr and "mux trust" in proc.stderr
    assert list(outside.iterdir()) == []
    assert Path(mux_ls(repo)["b"]["worktree"]) == repo.parent / "proj.worktrees" / "b"


def test_an_untrusted_worktree_dir_refuses_a_task_named_like_a_symlink_out(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "autostart"
    outside.mkdir()
    (repo / "sub").mkdir()
    (repo / "sub" / "b").symlink_to(outside)
    git(repo, "add", "sub")
    git(repo, "commit", "-q", "-m", "a link named like the next task")
    new_task(repo, "a", "-a", "fake")
    write_repo_config(repo, 'worktree_dir = "../{repo}.worktrees/a/sub/{task}"\n')
    proc = run_mux("new", "b", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "worktree_dir" in proc.stderr and "mux trust" in proc.stderr
    assert list(outside.iterdir()) == [] and "b" not in mux_ls(repo)
    assert "mux/b" not in git(repo, "branch", "--list"), "refused before anything was created"


# ---------------------------------------------------------------------------------------------- 13: regexes


def test_a_catastrophic_pattern_in_an_untrusted_repo_config_stalls_no_command(repo: Path) -> None:
    write_repo_config(repo, f"[agents.fake.status]\nwaiting = ['{HOSTILE}']\n")
    new_task(repo, "t", "-a", "fake")
    run_mux("send", "t", "a" * 70, cwd=repo)  # a screen line long enough to hang a backtracking engine
    wait_until(lambda: "got: " + "a" * 70 in screen(repo, "t"))
    for args in (["ls"], ["ls", "--json"], ["status-line", "--tmux-styles"], ["wait", "t", "--for", "any"]):
        try:
            proc = run_mux(*args, cwd=repo, timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`mux {' '.join(args)}` still ran after {DEADLINE} s")
        assert proc.returncode == 0, proc.stderr
    assert mux_ls(repo)["t"]["state"] == "idle"
    # The monitor is not stuck in the pattern either: it still delivers a queued prompt.
    run_mux("send", "t", "--when-idle", "after the hostile pattern", cwd=repo)
    wait_until(lambda: "got: after the hostile pattern" in screen(repo, "t"), timeout=DEADLINE)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"(a)\1", "backreferences"), ("(?=x)y", "lookaround"), ("(?<!x)y", "lookaround")],
)
def test_a_pattern_re2_cannot_run_in_linear_time_is_refused_in_one_line_naming_it(
    repo: Path, pattern: str, why: str
) -> None:
    write_repo_config(repo, f"[agents.fake.status]\nworking = ['{pattern}']\n")
    proc = run_mux("new", "t", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "agents.fake.status.working[0]" in proc.stderr and why in proc.stderr
    assert str(repo / ".mux.toml") in proc.stderr and "Traceback" not in proc.stderr
    assert "mux/t" not in git(repo, "branch", "--list"), "refused before anything was created"


@pytest.mark.parametrize(
    ("patterns", "key", "why"),
    [
        ([r"[\s\S]{1000}Z"], "working[0]", "RE2 instructions"),  # 7,005 instructions: 26 ms a 10 KB screen
        ([f"w{i}" for i in range(33)], "working", "more than 32 patterns"),
    ],
)
def test_patterns_too_costly_for_every_screen_are_refused_in_one_line(
    repo: Path, patterns: list[str], key: str, why: str
) -> None:
    write_repo_config(repo, f"[agents.fake.status]\nworking = {json.dumps(patterns)}\n")
    proc = run_mux("new", "t", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"agents.fake.status.{key}" in proc.stderr and why in proc.stderr


@pytest.mark.parametrize(
    ("glob", "why"), [("/".join(["**"] * 6) + "/x", "more than 2 '**'"), ("data/a**", "whole path component")]
)
def test_a_copy_glob_that_would_stall_mux_new_is_refused_in_one_line(repo: Path, glob: str, why: str) -> None:
    deep = repo.joinpath(*(f"d{i}" for i in range(30)))  # a repo may track a folder chain this deep
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "deep")
    write_repo_config(repo, f"copy = [{toml_string(glob)}]\n")
    try:
        proc = run_mux("new", "t", "-a", "fake", cwd=repo, check=False, timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`mux new` still globbed {glob!r} after {DEADLINE} s")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "copy[0]" in proc.stderr and why in proc.stderr and "Traceback" not in proc.stderr


def test_a_worktreeinclude_line_that_would_stall_git_is_refused_in_one_line(repo: Path) -> None:
    deep = repo.joinpath(*(f"d{i}" for i in range(30)))
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("x\n")
    (repo / ".worktreeinclude").write_text("# local config\n.env\n" + "/".join(["**"] * 12) + "/x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "deep, and a .worktreeinclude (repo content: no trust asked)")
    try:
        proc = run_mux("new", "t", "-a", "fake", cwd=repo, check=False, timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`mux new` still matched .worktreeinclude after {DEADLINE} s")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{repo / '.worktreeinclude'}:3" in proc.stderr and "'**'" in proc.stderr
    assert "mux/t" not in git(repo, "branch", "--list"), "all or none"
    assert not (repo.parent / "proj.worktrees" / "t").exists() and mux_ls(repo) == {}


# ---------------------------------------------------------------------------------------------- 12: escapes


def toml_string(text: str) -> str:
    """A TOML basic string holding `text` exactly, control characters and all (as \\uXXXX escapes)."""
    return json.dumps(text, ensure_ascii=True)  # JSON's string escapes are valid TOML


def assert_clean(output: str, what: str) -> None:
    found = [c for c in CONTROLS if c in output]
    assert not found, f"{what} printed {found!r}: {output!r}"


def test_escapes_in_an_untrusted_status_pattern_never_reach_the_terminal(repo: Path) -> None:
    pattern = "(?:" + re.escape("".join(ATTACKS)) + ")?fake>"  # matches the fake prompt: the REASON quotes it
    write_repo_config(repo, f"[agents.fake.status]\nwaiting = [{toml_string(pattern)}]\n")
    run_mux("new", "t", "-a", "fake", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["t"])["state"] == "waiting" and r)
    assert row["reason"] == f"screen: {pattern}", "--json keeps the data (JSON-escaped)"
    assert_clean(run_mux("ls", "--json", cwd=repo).stdout, "ls --json")
    table = run_mux("ls", cwd=repo).stdout
    assert_clean(table, "ls")
    assert "fake>" in table and len(table.splitlines()) == 2
    _, on_terminal = run_mux_on_terminal("ls", cwd=repo)
    assert_clean(on_terminal.replace("\x1b[1;31m", "").replace("\x1b[0m", ""), "ls on a terminal")  # its own colour
    waited = run_mux("wait", "t", "--for", "waiting", "--timeout", "10", cwd=repo).stdout
    assert_clean(waited, "wait")
    assert waited.startswith("t: waiting (screen: ") and "fake>" in waited
    assert_clean(watch_once(repo), "ls --watch")


def watch_once(repo: Path) -> str:
    """`mux ls --watch` until it drew the table once, then Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "muxagent", "ls", "--watch"], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=DEADLINE)
    return "".join(lines)


def test_escapes_and_markup_in_a_reason_reach_a_desktop_notification_as_plain_text(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = recording_notify_send(tmp_path, monkeypatch)
    pattern = "(?:" + re.escape(OSC52 + '<a href="https://evil.example">') + ")?y/n"
    write_repo_config(repo, f"[agents.fake.status]\nwaiting = [{toml_string(pattern)}]\n")
    new_task(repo, "t", "-a", "fake")
    run_mux("send", "t", "ask", cwd=repo)  # idle -> waiting: the monitor notifies
    body = wait_until(lambda: sent.exists() and sent.read_text())
    assert_clean(body, "notify-send")
    assert "&lt;a" in body and "<a" not in body, "the body takes markup: the reason stays text"


def test_escapes_in_a_repo_setting_quoted_by_an_error_never_reach_the_terminal(repo: Path) -> None:
    write_repo_config(repo, f"base = {toml_string('no-such' + OSC52)}\n")
    proc = run_mux("new", "t", "-a", "fake", cwd=repo, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert_clean(proc.stderr, "the error")


def test_escapes_in_a_tasks_files_reach_a_terminal_from_diff_only_cleaned(repo: Path) -> None:
    worktree = new_task(repo, "t", "-a", "fake")
    (worktree / "notes.txt").write_text(f"copy this{OSC52}\u202eevil\n")
    _, on_terminal = run_mux_on_terminal("diff", "t", cwd=repo)
    assert "copy this" in on_terminal and "notes.txt" in on_terminal
    assert_clean(on_terminal, "diff on a terminal")
    piped = run_mux("diff", "t", cwd=repo).stdout
    assert OSC52 in piped, "a pipe gets git's exact bytes: the patch still applies"


def test_status_line_doubles_every_hash_of_a_tasks_text_and_drops_its_escapes() -> None:
    name = "x#[fg=red]#(touch pwned)" + OSC52
    task = Task(
        name=name, agent="fake", command=("fake",), base="main", branch="mux/x", worktree="/w/x",
        session="s", window="@1", created="2026-01-01T00:00:00Z", port=0,
    )  # fmt: skip
    waiting = TaskReport(task=task, status=TaskStatus(state=State.WAITING, reason="r"), changes=None)
    for line in (render.status_line([waiting]), render.status_line([waiting], tmux_styles=True)):
        assert_clean(line, "status-line")
        assert "x##[fg=red]##(touch pwned)" in line


@pytest.mark.parametrize("attack", ATTACKS)
def test_clean_text_removes_every_sequence_a_terminal_acts_on(attack: str) -> None:
    cleaned = render.clean_text(f"before{attack}after\tand\nnext")
    assert cleaned == "before" + "after\tand\nnext"
    assert render.clean_line(f"a{attack}\nb\tc") == "a b c"


def test_a_conflicting_file_name_reaches_the_agent_asked_to_resolve_it_without_escapes(
    repo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "typed"
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import sys\n"
        f"log = open({str(log)!r}, 'ab', buffering=0)\n"
        "sys.stdout.write('ready> '); sys.stdout.flush()\n"
        "for line in sys.stdin.buffer:\n"
        "    log.write(line)\n"
    )
    worktree = new_task(repo, "c", "-a", f"{sys.executable} {agent}")
    # Ends a bracketed paste, then types a command of its own: a branch chooses its file names.
    name = "notes\x1b[201~rm -rf ~\x1b[200~.txt"
    for where, text in ((worktree, "task version\n"), (repo, "base version\n")):
        (where / name).write_text(text)
        git(where, "add", "-A")
        git(where, "commit", "-q", "-m", "notes")
    proc = run_mux("sync", "c", "--ask", cwd=repo, check=False)
    assert proc.returncode == 3, proc.stderr
    assert_clean(proc.stdout, "sync's list of conflicts")
    typed = wait_until(lambda: log.exists() and b"Resolve the conflict" in log.read_bytes() and log.read_bytes())
    assert b"notes" in typed and b"\x1b" not in typed, typed
