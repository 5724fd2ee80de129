"""Hostile input, per command and per kind of argument (issue 10): exactly one line on stderr, a non-zero exit, no
traceback, and nothing changed on disk (refs, worktrees, the folders beside the repo, `.git/mux`, tmux windows).

The tables below are the whole test: NAMES holds the hostile classes of a task name, tried on every command that
takes one; ARGUMENTS holds, per command, hostile values of its other arguments (prompts, files, numbers, refs,
window ids, shells) and hostile option lists. A NUL cannot be passed in an argument at all (the kernel cuts argv
there), so it is tried where a file carries it. Every case is refused before any agent starts; the few that need a
live task to reach the check share one (LIVE_CASES).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile_helpers import assert_one_line_error, disk_state, run_raw
from merge_helpers import start

pytestmark = pytest.mark.usefixtures("fake_profile")

LATIN1 = os.fsdecode(b"caf\xe9")
ESCAPE = "\x1b]52;c;aGk=\x07\x1b[31m"  # OSC 52 (sets the clipboard) and a colour

NAMES = {
    "empty": "",
    "dash": "-lead",
    "dotdot": "..",
    "inner-dotdot": "a..b",
    "49-chars": "x" * 49,
    "slash": "a/b",
    "newline": "a\nb",
    "latin1": LATIN1,
    "escape": ESCAPE,
    "huge": "x" * 100_000,
}

# How each command takes a task name ("{}"); `--` so that a name starting with '-' is a name, not an option.
NAME_COMMANDS = {
    "new": ("new", "-a", "fake", "--", "{}"),
    "attach": ("attach", "--", "{}"),
    "send": ("send", "--", "{}", "hi"),
    "send-when-idle": ("send", "--when-idle", "--", "{}", "hi"),
    "peek": ("peek", "--", "{}"),
    "diff": ("diff", "--", "{}"),
    "wait": ("wait", "--timeout", "1", "--", "{}"),
    "merge": ("merge", "--", "{}"),
    "sync": ("sync", "--", "{}"),
    "rm": ("rm", "--", "{}"),
    "rm-force": ("rm", "--force", "--", "{}"),
    "restore": ("restore", "--", "{}"),
    "restart": ("restart", "--", "{}"),
    "logs": ("logs", "--", "{}"),
    "inbox": ("inbox", "--", "{}"),
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
@pytest.mark.parametrize("command", NAME_COMMANDS.values(), ids=NAME_COMMANDS.keys())
def test_a_hostile_task_name_is_refused_by_every_command(
    repo: Path, tmux_socket: str, command: tuple[str, ...], name: str
) -> None:
    before = disk_state(repo, tmux_socket)
    assert_one_line_error(run_raw(*(name if arg == "{}" else arg for arg in command), cwd=repo))
    assert disk_state(repo, tmux_socket) == before


def _files(tmp: Path) -> dict[str, Path]:
    """Hostile prompt files: missing, a directory, a path through a file, not UTF-8, a NUL, endless."""
    (tmp / "latin1.txt").write_bytes(b"caf\xe9\n")
    (tmp / "nul.txt").write_bytes(b"a\x00b\n")
    (tmp / "plain.txt").write_text("a prompt\n")
    return {
        "missing": tmp / "missing.txt",
        "directory": tmp,
        "through-a-file": tmp / "plain.txt" / "x",
        "latin1": tmp / "latin1.txt",
        "nul": tmp / "nul.txt",
        "endless": Path("/dev/zero"),
    }


FILE_KINDS = ["missing", "directory", "through-a-file", "latin1", "nul", "endless"]


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_a_hostile_prompt_file_is_refused(repo: Path, tmp_path: Path, tmux_socket: str, kind: str) -> None:
    path = _files(tmp_path)[kind]
    before = disk_state(repo, tmux_socket)
    assert_one_line_error(run_raw("new", "t", "-a", "fake", "--prompt-file", str(path), cwd=repo))
    assert disk_state(repo, tmux_socket) == before


# (case id, argv): every one refused before a task is looked up or an agent started.
ARGUMENTS = [
    # new: prompts, agents, base refs, options
    ("new-prompt-latin1", ("new", "t", "-a", "fake", "-p", LATIN1)),
    ("new-prompt-and-file", ("new", "t", "-a", "fake", "-p", "x", "--prompt-file", "/dev/null")),
    ("new-agent-empty", ("new", "t", "-a", "")),
    ("new-agent-dash", ("new", "t", "-a", "-lead")),
    ("new-agent-latin1", ("new", "t", "-a", LATIN1)),
    ("new-agent-escape", ("new", "t", "-a", ESCAPE)),
    ("new-agent-unbalanced-quote", ("new", "t", "-a", "fake 'x")),
    ("new-base-empty", ("new", "t", "-a", "fake", "--base", "")),
    ("new-base-dash", ("new", "t", "-a", "fake", "--base", "--upload-pack=touch x")),
    ("new-base-dotdot", ("new", "t", "-a", "fake", "--base", "main..main")),
    ("new-base-newline", ("new", "t", "-a", "fake", "--base", "main\nmain")),
    ("new-base-latin1", ("new", "t", "-a", "fake", "--base", LATIN1)),
    ("new-base-escape", ("new", "t", "-a", "fake", "--base", ESCAPE)),
    ("new-no-name", ("new",)),
    ("new-unknown-option", ("new", "t", "--nope")),
    # send: texts an agent cannot take
    ("send-latin1", ("send", "t", LATIN1)),
    ("send-when-idle-latin1", ("send", "t", LATIN1, "--when-idle")),
    ("send-no-text", ("send", "t")),
    # peek: line counts
    ("peek-lines-negative", ("peek", "t", "-n", "-5")),
    ("peek-lines-huge", ("peek", "t", "-n", "99999999999999999999")),
    ("peek-lines-nan", ("peek", "t", "-n", "nan")),
    ("peek-lines-word", ("peek", "t", "-n", "ten")),
    # wait: timeouts and states
    ("wait-timeout-nan", ("wait", "t", "--timeout", "nan")),
    ("wait-timeout-inf", ("wait", "t", "--timeout", "inf")),
    ("wait-timeout-negative", ("wait", "t", "--timeout", "-1")),
    ("wait-timeout-word", ("wait", "t", "--timeout", "soon")),
    ("wait-for-unknown", ("wait", "t", "--for", "done")),
    ("wait-for-empty", ("wait", "t", "--for", "")),
    ("wait-no-name", ("wait",)),
    # merge: messages and strategies
    ("merge-message-latin1", ("merge", "t", "-m", LATIN1)),
    ("merge-two-strategies", ("merge", "t", "--squash", "--rebase")),
    # sync, rm, clean: stray arguments
    ("sync-extra", ("sync", "t", "u")),
    ("rm-extra", ("rm", "t", "u")),
    ("clean-extra", ("clean", "x")),
    ("clean-unknown-option", ("clean", "--force")),
    # restore: stamps (no recovery ref exists)
    ("restore-at-empty", ("restore", "t", "--at", "")),
    ("restore-at-dash", ("restore", "t", "--at", "-x")),
    ("restore-at-dotdot", ("restore", "t", "--at", "../../heads/main")),
    ("restore-at-latin1", ("restore", "t", "--at", LATIN1)),
    # gc: ages
    ("gc-nan", ("gc", "--older-than", "nan")),
    ("gc-inf", ("gc", "--older-than", "inf")),
    ("gc-1e10", ("gc", "--older-than", "1e10")),
    ("gc-negative", ("gc", "--older-than", "-1")),
    ("gc-word", ("gc", "--older-than", "old")),
    ("gc-missing", ("gc",)),
    # restart: a name or --all, not both and not neither
    ("restart-neither", ("restart",)),
    ("restart-both", ("restart", "t", "--all")),
    # ls, logs, trust, init, status-line, agents, doctor: stray arguments and options
    ("ls-extra", ("ls", "x")),
    ("ls-unknown-option", ("ls", "--all")),
    ("logs-no-name", ("logs",)),
    ("trust-extra", ("trust", "x")),
    ("trust-show-missing-file", ("trust", "--show")),
    ("init-extra", ("init", "x")),
    ("status-line-extra", ("status-line", "x")),
    ("agents-extra", ("agents", "x")),
    ("doctor-unknown-option", ("doctor", "--fix")),
    # next-waiting: window ids
    ("next-waiting-empty", ("next-waiting", "--from", "")),
    ("next-waiting-dash", ("next-waiting", "--from", "-x")),
    ("next-waiting-pane", ("next-waiting", "--from", "%1")),
    ("next-waiting-name", ("next-waiting", "--from", "login-fix")),
    ("next-waiting-latin1", ("next-waiting", "--from", LATIN1)),
    ("next-waiting-format", ("next-waiting", "--from", "#(touch x)")),
    # completion: shells
    ("completion-empty", ("completion", "")),
    ("completion-unknown", ("completion", "tcsh")),
    ("completion-injection", ("completion", "bash; touch x")),
    ("completion-latin1", ("completion", LATIN1)),
    ("completion-huge", ("completion", "b" * 100_000)),
    ("completion-missing", ("completion",)),
    # the command itself
    ("unknown-command", ("frobnicate",)),
    ("unknown-command-latin1", (LATIN1,)),
]


@pytest.mark.parametrize("argv", [argv for _, argv in ARGUMENTS], ids=[case for case, _ in ARGUMENTS])
def test_a_hostile_argument_is_refused(repo: Path, tmux_socket: str, argv: tuple[str, ...]) -> None:
    before = disk_state(repo, tmux_socket)
    proc = run_raw(*argv, cwd=repo)
    assert_one_line_error(proc)
    assert "no task named" not in proc.stderr  # refused for the argument itself, not for want of a task
    assert disk_state(repo, tmux_socket) == before
    assert not (repo / "x").exists()


# Checks that come after the task is found: one live task, every value tried on it in turn.
LIVE_CASES = [
    ("merge-into-dash", ("merge", "t", "--into", "-x")),
    ("merge-into-missing", ("merge", "t", "--into", "nope")),
    ("merge-into-latin1", ("merge", "t", "--into", LATIN1)),
    ("merge-into-escape", ("merge", "t", "--into", ESCAPE)),
    ("merge-into-itself", ("merge", "t", "--into", "mux/t")),
    ("restore-while-it-exists", ("restore", "t")),
    ("restart-while-running", ("restart", "t")),
    ("new-same-name", ("new", "t", "-a", "fake")),
]


def test_hostile_arguments_that_need_a_live_task_are_refused(repo: Path, tmux_socket: str) -> None:
    start(repo, "t")
    for case, argv in LIVE_CASES:
        before = disk_state(repo, tmux_socket)
        proc = run_raw(*argv, cwd=repo)
        try:
            assert_one_line_error(proc)
        except AssertionError as exc:
            raise AssertionError(f"{case}: {exc}") from None
        assert disk_state(repo, tmux_socket) == before, case


def test_texts_a_prompt_may_hold_are_delivered_not_refused(repo: Path, tmux_socket: str) -> None:
    """The other side of the line: a prompt is verbatim text, so these are no hostile input to `send`."""
    start(repo, "t")
    for text in ("-leading dash", "..", "x" * 49, "two\nlines", "tab\there", "#(touch x) $(touch x) `touch x`;"):
        proc = run_raw("send", "t", "--", text, cwd=repo)
        assert proc.returncode == 0 and proc.stderr == "", (text, proc.stderr)
    assert not (repo / "x").exists() and not (repo.parent / "proj.worktrees" / "t" / "x").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("new", "t", "-a", "fake", "-p", LATIN1), "the prompt is not UTF-8 text (byte 0xe9 at character 3)"),
        (("send", "t", LATIN1), "the prompt is not UTF-8 text (byte 0xe9 at character 3)"),
        (("merge", "t", "-m", LATIN1), "the message is not UTF-8 text (byte 0xe9 at character 3)"),
    ],
    ids=["new-prompt", "send", "merge-message"],
)
def test_a_text_that_is_not_utf8_is_named_so(repo: Path, argv: tuple[str, ...], words: str) -> None:
    assert_one_line_error(run_raw(*argv, cwd=repo), words)
