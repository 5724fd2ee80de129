"""muxagent.tmux.client against a real private tmux server (the autouse `hermetic` fixture picks the socket)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import ParamSpec, TypeVar

import libtmux
import pytest
from conftest import wait_until

from muxagent.errors import TmuxError
from muxagent.model import PaneInfo
from muxagent.tmux.client import ScreenCache, Tmux

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# Writes its argv, cwd and a few environment variables as JSON to the file named by its first argument.
REPORT = """
import json, os, sys
json.dump({"argv": sys.argv[2:], "cwd": os.getcwd(),
           "env": {k: os.environ.get(k) for k in ("MUX_TASK", "ODD", "OTHER")}},
          open(sys.argv[1] + ".tmp", "w"))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""

# Appends every line it reads from its terminal to the file named by its first argument.
ECHO_LINES = """
import sys
out = open(sys.argv[1], "a")
for line in sys.stdin:
    out.write(line)
    out.flush()
"""

# Asks for bracketed paste, as agents do, and records the raw bytes it receives.
RAW_RECORDER = """
import os, sys, tty
tty.setraw(0)
sys.stdout.write("\\033[?2004hready")
sys.stdout.flush()
out = open(sys.argv[1], "ab")
while True:
    out.write(os.read(0, 4096))
    out.flush()
"""

SLEEP = [PY, "-c", "import time; time.sleep(60)"]

P = ParamSpec("P")
R = TypeVar("R")


def recording_calls(fn: Callable[P, R], calls: list[tuple[object, ...]]) -> Callable[P, R]:
    """fn, appending the positional arguments of each call to calls."""

    def recorded(*args: P.args, **kwargs: P.kwargs) -> R:
        calls.append(args)
        return fn(*args, **kwargs)

    return recorded


def read_json(path: Path) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def session_exists(tmux: Tmux, session: str) -> bool:
    """Asked of tmux directly, not through the module under test."""
    args = ["tmux", "-L", str(tmux.socket), "has-session", "-t", f"={session}"]
    return subprocess.run(args, capture_output=True).returncode == 0


def window_exists(tmux: Tmux, window_id: str) -> bool:
    args = ["tmux", "-L", str(tmux.socket), "display-message", "-p", "-t", window_id, "#{window_id}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == window_id


def pane_of(tmux: Tmux, window_id: str) -> PaneInfo | None:
    return next((pane for pane in tmux.snapshot() if pane.window_id == window_id), None)


def any_dead_pane(tmux: Tmux, window_id: str) -> PaneInfo | None:
    pane = pane_of(tmux, window_id)
    return pane if pane is not None and pane.dead else None


def dead_pane(tmux: Tmux, window_id: str) -> PaneInfo | None:
    # tmux may see the pane's terminal close a moment before it reaps the process and learns the status.
    pane = pane_of(tmux, window_id)
    return pane if pane is not None and pane.dead and pane.dead_status is not None else None


def test_socket_comes_from_the_environment_at_construction(tmux_socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Tmux().socket == tmux_socket
    assert Tmux("other").socket == "other"
    monkeypatch.delenv("MUX_TMUX_SOCKET")
    assert Tmux().socket is None


def test_version() -> None:
    assert Tmux().version()[0].isdigit()


def test_first_window_creates_the_session_and_the_second_joins_it(tmp_path: Path, server: libtmux.Server) -> None:
    tmux = Tmux()
    assert not tmux.server_running()
    assert not session_exists(tmux, "proj")
    first = tmux.new_window("proj", "task-a", tmp_path, SLEEP, {}, task="a")
    assert first.startswith("@")
    assert tmux.server_running()
    assert session_exists(tmux, "proj")
    assert not session_exists(tmux, "pro")
    second = tmux.new_window("proj", "task-b", tmp_path, SLEEP, {}, task="b")
    assert second.startswith("@") and second != first

    panes = tmux.snapshot()
    assert {(p.window_id, p.session, p.task, p.dead) for p in panes} == {
        (first, "proj", "a", False),
        (second, "proj", "b", False),
    }
    assert all(p.pane_id.startswith("%") and p.activity > 1e9 for p in panes)
    assert tmux.windows_with_task("proj") == {"a": first, "b": second}
    assert tmux.windows_with_task("pro") == {}
    assert window_exists(tmux, first) and window_exists(tmux, second)
    assert not window_exists(tmux, "@999")
    (session,) = server.sessions.filter(session_name="proj")
    names = {window.window_id: window.window_name for window in session.windows}
    assert names[first] == "task-a" and names[second] == "task-b"


def test_remain_on_exit_keeps_the_exit_status_of_instant_exits(tmp_path: Path) -> None:
    tmux = Tmux()
    # Lone `false` is the first window (new-session path), `exit 7` a later one (new-window path).
    first = tmux.new_window("s", "one", tmp_path, ["false"], {}, task="one")
    second = tmux.new_window("s", "two", tmp_path, ["sh", "-c", "exit 7"], {}, task="two")
    assert wait_until(lambda: dead_pane(tmux, first)).dead_status == 1
    pane = wait_until(lambda: dead_pane(tmux, second))
    assert (pane.dead_status, pane.task, pane.session) == (7, "two", "s")


def test_exit_statuses_are_not_lost_to_tmuxs_reaping_race(tmp_path: Path) -> None:
    # tmux with libutempter missed about a third of such exits: one at a time, so that no later exit in the
    # server reaps the lost one by chance.
    tmux = Tmux()
    tmux.new_window("s", "keep", tmp_path, SLEEP, {}, task="keep")
    for status in range(1, 9):
        window = tmux.new_window("s", f"w{status}", tmp_path, ["sh", "-c", f"sleep 0.1; exit {status}"], {}, task="t")
        assert wait_until(partial(any_dead_pane, tmux, window)).dead_status == status
        tmux.kill_window(window)


def test_a_pane_killed_by_a_signal_reports_128_plus_the_signal(tmp_path: Path, server: libtmux.Server) -> None:
    tmux = Tmux()
    window = tmux.new_window("s", "w", tmp_path, SLEEP, {}, task="t")
    (found,) = server.windows.filter(window_id=window)
    (pane,) = found.panes
    assert pane.pane_pid is not None
    os.kill(int(pane.pane_pid), 15)
    assert wait_until(lambda: dead_pane(tmux, window)).dead_status == 128 + 15


def test_a_lone_argv_element_is_a_program_not_a_shell_line(tmp_path: Path) -> None:
    program = tmp_path / "my prog; echo"
    out = tmp_path / "ran"
    program.write_text(f"#!/bin/sh\necho ok > '{out}'\n")
    program.chmod(0o755)
    tmux = Tmux()
    tmux.new_window("s", "one", tmp_path, [str(program)], {}, task="one")
    tmux.new_window("s", "two", tmp_path, [str(program)], {}, task="two")
    wait_until(lambda: out.exists())


def test_odd_cwd_argv_env_and_names_arrive_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: libtmux.Server
) -> None:
    # `#(touch pwned)` would run in the client's cwd, the pane's cwd or HOME: watch all three.
    monkeypatch.chdir(tmp_path)
    odd = tmp_path / 'it\'s a "dir" #(touch pwned) ##{pane_id} #{session_name};'
    odd.mkdir()
    argv = ["a;", "b\\;", ";", "{", "}", "#{pane_id}", "$(id)", "C-c", "", "two words"]
    env = {"MUX_TASK": "t#1", "ODD": "x;y #{pane_id} $(id);"}
    tmux = Tmux()
    reports = [tmp_path / "first.json", tmp_path / "second.json"]
    window_ids = [
        tmux.new_window("s", f"w#{{session_name}}{i}", odd, [PY, "-c", REPORT, str(out), *argv], env, task="t")
        for i, out in enumerate(reports)
    ]
    expected = {"argv": argv, "cwd": str(odd), "env": {**env, "OTHER": None}}
    for out in reports:
        assert wait_until(partial(read_json, out)) == expected
    for place in (tmp_path, odd, Path(os.environ["HOME"])):
        assert not (place / "pwned").exists()
    assert {"w#{session_name}0", "w#{session_name}1"} <= {window.window_name for window in server.windows}
    tmux.rename_window(window_ids[0], "r#{session_name};")
    assert [found.window_name for found in server.windows.filter(window_id=window_ids[0])] == ["r#{session_name};"]


def test_a_tasks_env_does_not_leak_into_later_windows_of_its_session(tmp_path: Path) -> None:
    tmux = Tmux()
    tmux.new_window("s", "one", tmp_path, SLEEP, {"MUX_TASK": "one", "OTHER": "1"}, task="one")
    out = tmp_path / "later.json"
    tmux.new_window("s", "two", tmp_path, [PY, "-c", REPORT, str(out)], {"ODD": "2"}, task="two")
    report = wait_until(lambda: read_json(out))
    assert report["env"] == {"MUX_TASK": None, "ODD": "2", "OTHER": None}


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TmuxError, match="no such directory"):
        Tmux().new_window("s", "w", tmp_path / "gone", SLEEP, {}, task="t")
    assert not Tmux().server_running()


def test_send_text_arrives_exactly_as_typed(tmp_path: Path) -> None:
    out = tmp_path / "lines.txt"
    tmux = Tmux()
    window = tmux.new_window("s", "w", tmp_path, [PY, "-c", ECHO_LINES, str(out)], {}, task="t")
    texts = ["C-c", "$(id)", "#{pane_id}", "Enter", "a;", "tab\there", "first line\nsecond line"]
    for text in texts:
        tmux.send_text(window, text)
    expected = "".join(text + "\n" for text in texts)
    wait_until(lambda: out.exists() and out.read_text() == expected)
    # No stray buffer left behind with the prompt in it.
    buffers = subprocess.run(
        ["tmux", "-L", str(tmux.socket), "list-buffers", "-F", "#{buffer_name}"], capture_output=True, text=True
    ).stdout
    assert "mux-" not in buffers


def test_send_text_is_a_bracketed_paste_when_the_program_asks_for_one(tmp_path: Path) -> None:
    out = tmp_path / "raw.bin"
    tmux = Tmux()
    window = tmux.new_window("s", "w", tmp_path, [PY, "-c", RAW_RECORDER, str(out)], {}, task="t")
    # tmux reads pane output in order: once `ready` shows, the bracketed paste request has been seen.
    wait_until(lambda: out.exists() and tmux.capture([window]).get(window) == "ready")
    tmux.send_text(window, "one\ntwo C-c")
    wait_until(lambda: out.read_bytes() == b"\x1b[200~one\rtwo C-c\x1b[201~\r")


def test_send_keys_presses_named_keys(tmp_path: Path) -> None:
    out = tmp_path / "lines.txt"
    tmux = Tmux()
    window = tmux.new_window("s", "w", tmp_path, [PY, "-c", ECHO_LINES, str(out)], {}, task="t")
    tmux.send_keys(window, "y", "-x", "Enter")
    wait_until(lambda: out.exists() and out.read_text() == "y-x\n")


def test_send_to_a_missing_window_fails_with_tmux_words(tmp_path: Path) -> None:
    tmux = Tmux()
    tmux.new_window("s", "w", tmp_path, SLEEP, {}, task="t")
    with pytest.raises(TmuxError, match="can't find"):
        tmux.send_text("@999", "hello")
    buffers = subprocess.run(
        ["tmux", "-L", str(tmux.socket), "list-buffers", "-F", "#{buffer_name}"], capture_output=True, text=True
    ).stdout
    assert "mux-" not in buffers
    with pytest.raises(TmuxError, match=r"^tmux rename-window failed: can't find window: @999$"):
        tmux.rename_window("@999", "x")


def test_capture_reads_many_panes_in_one_call_without_escape_sequences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmux = Tmux()
    colour = [PY, "-c", "print('\\033[31mred\\033[0m plain'); print(); import time; time.sleep(60)"]
    counting = [PY, "-c", "[print('line', i) for i in range(80)]; import time; time.sleep(60)"]
    red = tmux.new_window("s", "red", tmp_path, colour, {}, task="red")
    count = tmux.new_window("s", "count", tmp_path, counting, {}, task="count")
    red_pane = wait_until(lambda: pane_of(tmux, red)).pane_id
    # Both have drawn (on a loaded machine the red one's interpreter may still be starting).
    wait_until(lambda: "plain" in tmux.capture([red_pane]).get(red_pane, ""))
    wait_until(lambda: "line 79" in tmux.capture([count]).get(count, ""))

    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(subprocess, "run", recording_calls(subprocess.run, calls))
    screens = tmux.capture([red_pane, count])
    assert len(calls) == 1
    assert screens[red_pane] == "red plain"
    assert "\x1b" not in screens[red_pane]
    assert screens[count].endswith("line 79")
    assert "line 10\n" not in screens[count]  # scrolled off a 50-line screen

    deeper = tmux.capture([count], lines=60)[count]
    assert "line 10\nline 11\n" in deeper and deeper.endswith("line 79")

    # A vanished target is left out and does not hide the others.
    calls.clear()
    screens = tmux.capture(["%999", red_pane, "@999", count])
    assert set(screens) == {red_pane, count}
    assert screens[red_pane] == "red plain"
    assert len(calls) == 3
    assert tmux.capture([]) == {}


def test_screen_cache_reads_a_pane_again_once_it_has_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmux = Tmux()
    go = tmp_path / "go"
    script = f"import os, time\nprint('one', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
    window = tmux.new_window(
        "s", "w", tmp_path, [PY, "-c", script + "print('two', flush=True); time.sleep(60)"], {}, task="w"
    )
    wait_until(lambda: tmux.capture([window]).get(window) == "one")
    cache = ScreenCache()

    reads: list[object] = []
    real_capture = tmux.capture

    def counting_capture(targets: list[str], lines: int | None = None) -> dict[str, str]:
        reads.append(list(targets))
        return real_capture(targets, lines)

    monkeypatch.setattr(tmux, "capture", counting_capture)

    def look() -> str:
        pane = wait_until(lambda: pane_of(tmux, window))
        return cache.read(tmux, [pane])[pane.pane_id]

    assert look() == "one"

    # Once the pane has been quiet since a whole second before a read, later looks need no tmux call.
    def a_fresh_look_reads_nothing() -> bool:
        reads.clear()
        return look() == "one" and not reads

    wait_until(a_fresh_look_reads_nothing, timeout=5)
    go.touch()
    wait_until(lambda: real_capture([window]).get(window) == "one\ntwo")
    assert look() == "one\ntwo"  # what the pane drew since is seen at the next look
    assert reads

    # Nor is a quiet screen kept for ever: past max_age it is read again.
    cache.max_age = 0.0
    reads.clear()
    assert look() == "one\ntwo" and reads


def test_quiet_screens_due_again_are_read_together_not_one_a_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each quiet screen is read again after max_age; one due brings those past half of it along, in one tmux call
    (read as each came due, 100 quiet panes cost a tmux process at almost every tick of the monitor)."""
    tmux = Tmux()
    windows = [tmux.new_window("s", f"w{n}", tmp_path, [PY, "-c", "print('quiet'); import time; time.sleep(60)"], {},
                               task=f"w{n}") for n in range(3)]  # fmt: skip
    for window in windows:
        wait_until(partial(lambda w: tmux.capture([w]).get(w) == "quiet", window))
    panes = [wait_until(partial(pane_of, tmux, window)) for window in windows]
    now = [max(pane.activity for pane in panes) + 2.0]  # every pane quiet since a second before the first read
    monkeypatch.setattr("muxagent.tmux.client.time", SimpleNamespace(time=lambda: now[0]))
    reads: list[list[str]] = []
    real_capture = tmux.capture

    def counting_capture(targets: list[str], lines: int | None = None) -> dict[str, str]:
        reads.append(list(targets))
        return real_capture(targets, lines)

    monkeypatch.setattr(tmux, "capture", counting_capture)
    cache = ScreenCache(max_age=10.0)
    ids = [pane.pane_id for pane in panes]

    def look_at(seconds: float) -> list[list[str]]:
        now[0] = seconds
        reads.clear()
        assert cache.read(tmux, panes) == dict.fromkeys(ids, "quiet")
        return list(reads)

    start = now[0]
    assert look_at(start) == [ids]
    cache.read(tmux, panes[:2])  # the third one forgotten: read afresh (age 0) at the next look
    assert look_at(start + 6.0) == [ids[2:]]
    assert look_at(start + 9.0) == []  # nothing due: nothing read
    # The first two are due at 10 s; the third, 4 s old, is not past half its max_age and waits its turn.
    assert look_at(start + 10.0) == [ids[:2]]
    # The third is due at 16 s: the first two, 6 s old, come along in the same call.
    assert look_at(start + 16.0) == [ids]


def test_tmux_works_without_libtmux_installed(tmp_path: Path, tmux_socket: str) -> None:
    """libtmux is a test dependency only: every call mux makes, the mutations too, runs with it unimportable."""
    code = f"""
import sys
from pathlib import Path
sys.modules["libtmux"] = None  # import libtmux now fails
from muxagent.tmux.client import Tmux
t = Tmux()
w = t.new_window("s", "w", Path({str(tmp_path)!r}), ["cat"], {{}}, task="t")
t.send_text(w, "one; #{{x}}")
t.rename_window(w, "renamed")
t.respawn(w, Path({str(tmp_path)!r}), ["cat"], {{}})
assert t.windows_with_task("s") == {{"t": w}}
assert t.capture([w]) == {{w: ""}}
t.kill_window(w)
assert t.snapshot() == []
"""
    subprocess.run([PY, "-c", code], cwd=ROOT, check=True)


def test_kill_window_goes_by_id_not_by_name_prefix(tmp_path: Path) -> None:
    tmux = Tmux()
    one = tmux.new_window("s", "task-1", tmp_path, SLEEP, {}, task="task-1")
    ten = tmux.new_window("s", "task-10", tmp_path, SLEEP, {}, task="task-10")
    tmux.kill_window(one)
    assert not window_exists(tmux, one)
    assert window_exists(tmux, ten)
    assert tmux.windows_with_task("s") == {"task-10": ten}
    tmux.kill_window(one)  # already gone: fine
    tmux.kill_window(ten)
    wait_until(lambda: not tmux.server_running())
    tmux.kill_window(ten)  # no server at all: fine


def test_no_server_means_empty_answers() -> None:
    tmux = Tmux()
    assert tmux.snapshot() == []
    assert tmux.capture(["%0", "@0"]) == {}
    assert tmux.windows_with_task("s") == {}
    assert not tmux.server_running()
    assert not session_exists(tmux, "s")
    assert not window_exists(tmux, "@0")


def test_concurrent_new_window_on_a_fresh_session_all_succeed(tmp_path: Path) -> None:
    def open_one(i: int) -> str:
        return Tmux().new_window("race", f"w{i}", tmp_path, SLEEP, {"MUX_TASK": str(i)}, task=f"t{i}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(open_one, range(6)))
    assert len(set(ids)) == 6
    panes = Tmux().snapshot()
    assert sorted((p.window_id, p.task, p.session) for p in panes) == sorted(
        (window, f"t{i}", "race") for i, window in enumerate(ids)
    )


def test_respawn_restarts_a_dead_pane_in_place(tmp_path: Path) -> None:
    tmux = Tmux()
    window = tmux.new_window("s", "w", tmp_path, ["sh", "-c", "exit 3"], {}, task="t")
    wait_until(lambda: dead_pane(tmux, window))
    out = tmp_path / "again.json"
    tmux.respawn(window, tmp_path, [PY, "-c", REPORT + "\nimport time; time.sleep(60)", str(out)], {"ODD": "o;"})
    assert wait_until(lambda: read_json(out))["env"] == {"MUX_TASK": None, "ODD": "o;", "OTHER": None}
    pane = pane_of(tmux, window)
    assert pane is not None and not pane.dead and pane.task == "t"


def test_missing_tmux_binary_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = Tmux(binary=str(tmp_path / "no-tmux"))
    for call in (
        bogus.require,
        bogus.version,
        bogus.snapshot,
        lambda: bogus.new_window("s", "w", tmp_path, SLEEP, {}, task="t"),
        lambda: bogus.send_keys("@1", "Enter"),
    ):
        with pytest.raises(TmuxError, match=r"^tmux is not installed \(need tmux >= 3\.2\)$"):
            call()
    # A context, so the fixture's own `tmux kill-server` still finds tmux afterwards.
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(tmp_path))
        with pytest.raises(TmuxError, match="tmux is not installed"):
            Tmux().require()
        with pytest.raises(TmuxError, match="tmux is not installed"):
            Tmux().version()
        with pytest.raises(TmuxError, match="tmux is not installed"):
            Tmux().kill_window("@1")


def test_attach_argv_targets_the_session_exactly(tmux_socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Tmux().attach_argv("proj") == ["tmux", "-L", tmux_socket, "attach-session", "-t", "=proj"]
    monkeypatch.delenv("MUX_TMUX_SOCKET")
    assert Tmux().attach_argv("proj") == ["tmux", "attach-session", "-t", "=proj"]


def test_attach_from_a_terminal_then_switch_from_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmux = Tmux()
    first = tmux.new_window("s", "one", tmp_path, SLEEP, {}, task="one")
    second = tmux.new_window("s", "two", tmp_path, SLEEP, {}, task="two")
    assert not tmux.inside_same_server("s")

    def clients() -> list[str]:
        return subprocess.run(
            ["tmux", "-L", str(tmux.socket), "list-clients", "-F", "#{session_name} #{window_id}"],
            capture_output=True, text=True,
        ).stdout.split()  # fmt: skip

    # Outside tmux, attach replaces the process with a tmux client: run it on a pseudo-terminal.
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (24, 80))
    child = subprocess.Popen(
        [PY, "-c", f"from muxagent.tmux.client import Tmux; Tmux().attach('s', {second!r})"],
        cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"},
    )  # fmt: skip
    os.close(slave)

    def drain() -> None:
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert wait_until(clients) == ["s", second]

        # Inside a pane of the same server: switch the existing client instead of nesting one.
        socket_path = subprocess.run(
            ["tmux", "-L", str(tmux.socket), "display-message", "-p", "-t", "=s", "#{socket_path}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        monkeypatch.setenv("TMUX", f"{socket_path},1,0")
        assert tmux.inside_same_server("s")
        assert not Tmux("another-server").inside_same_server("s")
        tmux.attach("s", first)
        assert wait_until(lambda: clients() == ["s", first])
    finally:
        subprocess.run(["tmux", "-L", str(tmux.socket), "detach-client", "-s", "=s"], capture_output=True)
        child.wait(timeout=10)
        os.close(master)
