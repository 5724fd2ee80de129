"""`mux status-line`, `mux next-waiting`, progress output and `--json` on the read commands."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import libtmux
import pytest
from conftest import mux_ls, run_mux, wait_until

from muxagent import render
from muxagent.commands import context, report
from muxagent.model import State, Task, TaskReport, TaskStatus


def task_report(name: str, state: State, created: str = "2026-01-01T00:00:00Z") -> TaskReport:
    task = Task(
        name=name, agent="fake", command=("fake",), base="main", branch=f"mux/{name}", worktree=f"/w/{name}",
        session="s", window=f"@{name}", created=created, port=0,
    )  # fmt: skip
    return TaskReport(task=task, status=TaskStatus(state=state, reason="test"), changes=None)


def test_status_line_counts_states_and_names_who_waits_first() -> None:
    reports = [
        task_report("a", State.WORKING),
        task_report("b", State.WAITING),
        task_report("c", State.IDLE),
        task_report("d", State.WAITING),
        task_report("e", State.WORKING),
    ]
    assert render.status_line(reports) == "?2 b,d ⚙2 ✓1"
    assert render.status_line([]) == ""
    assert render.state_counts(reports)["waiting"] == 2 and render.waiting_names(reports) == ["b", "d"]


def test_status_line_shortens_a_long_waiting_list_and_styles_for_tmux() -> None:
    reports = [task_report(f"t{i}", State.WAITING) for i in range(5)] + [task_report("x", State.EXITED)]
    assert render.status_line(reports) == "?5 t0,t1,t2,+2 ✗1"
    styled = render.status_line(reports, tmux_styles=True)
    assert styled.startswith("#[fg=red,bold]?5 t0,t1,t2,+2#[default]") and styled.endswith(" ✗1")


def test_progress_line_redraws_on_a_terminal_and_prints_steps_once_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    progress = render.ProgressLine(tty)
    progress("checking out main into /w/x")
    progress("setting up x [1/2] npm ci (1s)")
    progress.close()
    assert tty.getvalue().count("\r\x1b[K") == 3 and "npm ci" in tty.getvalue()

    plain = io.StringIO()
    progress = render.ProgressLine(plain)
    progress("checking out main into /w/x")
    for second in range(3):
        progress(f"setting up x [1/2] npm ci ({second}s)")
    progress("setting up x [2/2] make (3s)")
    progress.close()
    assert plain.getvalue() == "mux: setting up x [1/2] npm ci\nmux: setting up x [2/2] make\n"


def test_status_line_outside_a_repo_prints_nothing_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_mux("status-line", cwd=tmp_path)
    assert (proc.stdout, proc.stderr) == ("", "")
    assert time.monotonic() - started < 10


@pytest.mark.usefixtures("fake_profile")
def test_status_line_and_next_waiting_on_live_tasks(repo: Path) -> None:
    assert run_mux("status-line", cwd=repo).stdout == "\n"
    for name in ("one", "two", "three"):
        run_mux("new", name, "-a", "fake", cwd=repo)
    run_mux("send", "one", "ask", cwd=repo)
    run_mux("send", "three", "ask", cwd=repo)
    expected = {"one": "waiting", "two": "idle", "three": "waiting"}
    wait_until(lambda: {name: r["state"] for name, r in mux_ls(repo).items()} == expected, timeout=20)
    line = run_mux("status-line", cwd=repo).stdout
    assert line == "?2 one,three ✓1\n"
    data = json.loads(run_mux("status-line", "--json", cwd=repo).stdout)
    assert data["waiting"] == ["one", "three"] and data["counts"]["idle"] == 1 and data["line"] == line.strip()

    ctx = context.open_repo(repo)
    windows = {name: row["window"] for name, row in mux_ls(repo).items()}
    found = report.next_waiting(ctx)
    assert found is not None and found.name == "one"
    after_one = report.next_waiting(ctx, windows["one"])
    assert after_one is not None and after_one.name == "three"
    wrapped = report.next_waiting(ctx, windows["three"])
    assert wrapped is not None and wrapped.name == "one", "wraps around"
    from_idle = report.next_waiting(ctx, windows["two"])
    assert from_idle is not None and from_idle.name == "one"


@pytest.mark.usefixtures("fake_profile")
def test_next_waiting_with_nobody_waiting_is_silent(repo: Path) -> None:
    run_mux("new", "calm", "-a", "fake", cwd=repo)
    wait_until(lambda: mux_ls(repo)["calm"]["state"] == "idle", timeout=20)
    proc = run_mux("next-waiting", cwd=repo)
    assert (proc.stdout, proc.stderr) == ("", "")


@pytest.mark.usefixtures("fake_profile")
def test_read_commands_take_json(repo: Path) -> None:
    run_mux("new", "js", "-a", "fake", "-p", "write hello.txt hi", cwd=repo)
    worktree = repo.parent / "proj.worktrees" / "js"
    wait_until(lambda: (worktree / "hello.txt").exists(), timeout=20)
    peek = json.loads(run_mux("peek", "js", "--json", cwd=repo).stdout)
    assert peek["name"] == "js" and "fake agent ready" in peek["screen"]
    diff = json.loads(run_mux("diff", "js", "--json", cwd=repo).stdout)
    assert "+hi" in diff["diff"]
    stat = json.loads(run_mux("diff", "js", "--stat", "--json", cwd=repo).stdout)
    assert "hello.txt" in stat["stat"]
    checks = json.loads(run_mux("doctor", "--json", cwd=repo).stdout)
    assert {"git", "tmux", "repository"} <= {c["name"] for c in checks}
    assert all(set(c) == {"name", "ok", "fatal", "detail"} for c in checks)
    logs = json.loads(run_mux("logs", "js", "--json", cwd=repo).stdout)
    assert logs == {"name": "js", "log": ""}


def test_ls_table_has_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert render.use_colour(Tty())
    assert not render.use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.use_colour(Tty())
    table = render.table([task_report("a", State.WAITING)], colour=False)
    assert "\x1b" not in table


@pytest.mark.usefixtures("fake_profile")
def test_next_waiting_from_a_tmux_key_binding_focuses_the_waiting_task(
    repo: Path, tmux_socket: str, server: libtmux.Server
) -> None:
    for name in ("calm", "asks"):
        run_mux("new", name, "-a", "fake", cwd=repo)
    run_mux("send", "asks", "ask", cwd=repo)
    wait_until(lambda: mux_ls(repo)["asks"]["state"] == "waiting", timeout=20)
    rows = mux_ls(repo)
    session = rows["calm"]["session"]

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", tmux_socket, *args], check=True, capture_output=True, text=True).stdout

    tmux("select-window", "-t", rows["calm"]["window"])
    # A client, as a user in a terminal would have: control mode needs no terminal.
    client = subprocess.Popen(
        ["tmux", "-L", tmux_socket, "-C", "attach-session", "-t", f"={session}"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: tmux("list-clients", "-F", "#{client_name}").strip(), timeout=15)
        # What the README's binding runs (tmux sets TMUX for run-shell, as for a key binding).
        mux = f"{sys.executable} -m muxagent"
        tmux("run-shell", f"cd '{repo}' && {mux} next-waiting --from '{rows['calm']['window']}'")

        def active() -> str:
            (found,) = server.sessions.filter(session_name=session)
            return str(found.active_window.window_id)

        wait_until(lambda: active() == rows["asks"]["window"], timeout=15)
    finally:
        client.terminate()
        client.wait(timeout=10)
