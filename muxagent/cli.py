"""The `mux` command line: parse arguments, call `commands`, print. The only module that exits."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# The verbs every command may need; the others are imported by the commands that run them: a command pays for its
# own modules only (`mux ls` imports neither the merge nor task creation nor the doctor).
from muxagent import listing, naming, render
from muxagent.commands import context, interact, recovery, remove, report, wait
from muxagent.errors import MergeConflictError, MuxError, UsageError
from muxagent.state import view

if TYPE_CHECKING:
    from muxagent.commands import merge, resolve
    from muxagent.completion.spec import CompletionSpec

app = typer.Typer(
    name="mux",
    help="Run several coding agents on one repository: a git worktree, a branch and a tmux window per task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _completion_spec() -> CompletionSpec:
    from muxagent.completion.spec import spec_from_command

    return spec_from_command(typer.main.get_command(app))


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"mux {version('muxagent')}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Run several coding agents on one repository: a git worktree, a branch and a tmux window per task."""


NameArg = Annotated[str, typer.Argument(help="Task name.", metavar="NAME", show_default=False)]


# A prompt is text for an agent to read: a file past this size is a mistake, not a prompt.
MAX_PROMPT_FILE = 4 << 20
# `mux peek -n` at most: far beyond any tmux history-limit, and a number tmux can take.
MAX_SCROLLBACK = 1_000_000


class Interrupted(MuxError):
    exit_code = 130


@contextmanager
def _repo(shows_only: bool = False) -> Iterator[context.Context]:
    """The repository's context for one command. One that may change anything (all but `shows_only` ones) renews
    the live view's epoch as it ends, so that the next `ls` shows what it did, not a view from before it."""
    ctx = recovery.open_and_recover()
    try:
        yield ctx
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    finally:
        if not shows_only:
            view.renew_epoch(ctx.store.root)
        for note in ctx.notes:
            render.stderr_line(note)


@contextmanager
def _progress() -> Iterator[render.ProgressLine]:
    line = render.ProgressLine(sys.stderr)
    try:
        yield line
    finally:
        line.close()


def _print_json(data: Any) -> None:
    # ensure_ascii (the default): escapes, C1 and bidi controls leave as \uXXXX, the data itself unchanged.
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _say(line: str) -> None:
    """Print one line that quotes text mux does not control: a repo's config, an agent, git, a hook."""
    print(render.clean_line(line))


@app.command()
def new(
    name: NameArg,
    agent: Annotated[
        list[str] | None,
        typer.Option("-a", "--agent", help="Profile name or a command line; several make a group, one task each."),
    ] = None,
    prompt: Annotated[str | None, typer.Option("-p", "--prompt", help="First prompt for the agent.")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the first prompt from a file.", dir_okay=False)
    ] = None,
    base: Annotated[str | None, typer.Option("--base", help="Branch or commit to start from.")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Focus the task's window afterwards.")] = False,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Make it a sub-task of this task (default: the task mux runs in).")
    ] = None,
    no_parent: Annotated[
        bool, typer.Option("--no-parent", help="A top-level task, even when run from inside a task.")
    ] = False,
    notify: Annotated[
        str | None,
        typer.Option("--notify", help="States told to the parent's agent: idle,exited,waiting (default) or none."),
    ] = None,
    count: Annotated[
        int, typer.Option("-n", "--count", help="Start a group of this many tasks, NAME-1..NAME-N, one prompt.")
    ] = 1,
    max_running: Annotated[
        int | None,
        typer.Option("--max-running", help="In a group, start this many at once, the rest as earlier ones go idle."),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Run the agent in a bubblewrap sandbox: it writes its worktree only.")
    ] = False,
    yolo: Annotated[
        bool, typer.Option("--yolo", help="Let the agent act without asking (its yolo_args); implies --sandbox.")
    ] = False,
    host: Annotated[
        str | None, typer.Option("--host", help="Run the task on this host (`mux host add`), over SSH.")
    ] = None,
) -> None:
    """Start a task: worktree and branch mux/NAME, a tmux window, the agent running in it.

    Run from inside a task (its pane or worktree), the new task is its sub-task: it starts from the parent's
    branch and merges back into it. With -n N or several -a, a group of tasks on one base and prompt, all or
    none (see `mux compare`, `mux keep`)."""
    from muxagent.commands import create
    from muxagent.monitor import daemon

    if prompt is not None and prompt_file is not None:
        raise UsageError("give either --prompt or --prompt-file, not both")
    if prompt_file is not None:
        prompt = _read_prompt_file(prompt_file)
    agents = tuple(agent or ())
    grouped = count != 1 or len(agents) > 1
    if max_running is not None and not grouped:
        raise UsageError("--max-running is for a group: give -n N or several -a")
    if host is not None:
        _new_on_host(name, host, agents, prompt, base, grouped or sandbox or yolo or parent is not None, attach)
        return
    with _repo() as ctx:
        with _progress() as progress:
            request = create.NewRequest(
                name, agents[0] if agents else None, prompt, base, parent=parent, no_parent=no_parent, notify=notify,
                sandbox=sandbox, yolo=yolo,
            )  # fmt: skip
            if grouped:
                tasks = create.new_group(ctx, create.GroupRequest(request, agents, count, max_running), progress)
            else:
                tasks = [create.new_task(ctx, request, progress)]
        for task in tasks:
            where = "queued" if task.queued else f"window {task.window}"
            fenced = f", {listing.sandbox_label(task.yolo, task.sandbox_network)}" if task.sandbox else ""
            _say(f"{task.name}: {task.agent} in {task.worktree} (branch {task.branch}, {where}{fenced})")
        daemon.ensure_running(ctx)
        if attach:
            interact.attach(ctx, tasks[0].name)


def _new_on_host(
    name: str, host: str, agents: tuple[str, ...], prompt: str | None, base: str | None, unsupported: bool,
    attach: bool,
) -> None:  # fmt: skip
    from muxagent.commands import remote
    from muxagent.monitor import daemon

    if unsupported:
        raise UsageError("--host takes one task: no -n, several -a, --parent, --sandbox or --yolo with it (yet)")
    with _repo() as ctx:
        with _progress() as progress:
            request = remote.RemoteRequest(name, host, agents[0] if agents else None, prompt, base)
            task = remote.create(ctx, request, progress)
        _say(f"{task.name}: {task.agent} on {host} in {task.worktree} (branch {task.branch}, window {task.window})")
        # The monitor asks the host for `ls` and rings when the task waits; a machine without tmux of its own
        # still runs tasks on hosts, each `ls` asking them itself.
        with suppress(MuxError):
            daemon.ensure_running(ctx)
        if attach:
            interact.attach(ctx, task.name)


def _read_prompt_file(path: Path) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PROMPT_FILE + 1)  # bounded: `--prompt-file /dev/zero` must not fill the memory
    except OSError as exc:
        raise UsageError(f"cannot read prompt file {path}: {exc.strerror}") from None
    if len(data) > MAX_PROMPT_FILE:
        raise UsageError(f"prompt file {path} is larger than {MAX_PROMPT_FILE >> 20} MiB")
    try:
        return naming.validate_prompt(data.decode("utf-8", "surrogateescape"))
    except UsageError as exc:
        raise UsageError(f"prompt file {path}: {exc}") from None


@app.command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep the table on screen, redrawn as tasks change.")] = False,
) -> None:
    """List tasks: state, changes, commits ahead/behind, age."""
    from muxagent import live
    from muxagent.monitor import daemon

    if watch:
        with _repo(shows_only=True) as ctx:
            live.watch_table(ctx, sys.stdout)
        return
    with _repo(shows_only=True) as ctx:
        tasks = report.task_list(ctx)
        daemon.revive(ctx)
    if as_json:
        _print_json(tasks.to_json())
    else:
        print(tasks.text(colour=render.use_colour(sys.stdout)))


@app.command()
def attach(name: NameArg) -> None:
    """Focus the task's window (switch-client inside tmux, attach outside)."""
    with _repo(shows_only=True) as ctx:
        interact.attach(ctx, name)


@app.command()
def send(
    name: NameArg,
    text: Annotated[str, typer.Argument(help="Text to deliver verbatim, followed by Enter.", show_default=False)],
    when_idle: Annotated[
        bool,
        typer.Option("--when-idle", help="Queue it for the agent's next idle moment; print its id."),
    ] = False,
    now: Annotated[bool, typer.Option("--now", help="Type it even while the agent is working.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the agent to take it (exit 6).")
    ] = interact.SEND_TIMEOUT,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object: the sign it was taken, or the queued entry.")
    ] = False,
) -> None:
    """Deliver a prompt to the task's agent exactly as written, and wait until the agent took it.

    Exit 0 once it did (a hook fired after Enter, its screen changed, or it exited); 5 when the agent is working,
    nothing typed (`--when-idle` queues it, `--now` types it anyway); 6 when the agent showed no sign of taking
    it within --timeout. A waiting agent takes the text as its answer.
    """
    from muxagent.monitor import daemon

    if when_idle and now:
        raise UsageError("give either --when-idle or --now, not both")
    with _repo() as ctx:
        if not when_idle:
            sent = interact.send_confirmed(ctx, name, text, now=now, timeout=timeout)
            if as_json:
                _print_json(sent.to_json())
            return
        queued = interact.queue_prompt(ctx, name, text)
        daemon.ensure_running(ctx)
    if as_json:
        _print_json(queued.to_json())
        return
    print(queued.id)
    render.stderr_line(f"queued for {name} (#{queued.position} in its queue; `mux queue --cancel {queued.id}`)")


@app.command("queue")
def list_queue(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Task name (default: every task).", show_default=False)
    ] = None,
    cancel: Annotated[
        str | None, typer.Option("--cancel", help="Take the prompt with this id off its queue.", metavar="ID")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (with --cancel: an object).")] = False,
) -> None:
    """List the prompts queued with `mux send --when-idle`, in the order they go out, or cancel one."""
    with _repo(shows_only=True) as ctx:
        if cancel is not None:
            cancelled = interact.cancel_queued(ctx, cancel, name)
            if as_json:
                _print_json(cancelled.to_json())
            else:
                _say(f"cancelled {cancelled.id} for {cancelled.task}: {cancelled.first_line()}")
            return
        items = interact.queued(ctx, name)
    if as_json:
        _print_json([item.to_json() for item in items])
        return
    for item in items:
        _say(item.text_line())
    if not items:
        print(f"nothing queued for {name}" if name is not None else "nothing queued")


@app.command("wait")
def wait_for(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Tasks to wait for.", show_default=False)],
    state: Annotated[wait.Target, typer.Option("--for", help="The state to wait for.")] = wait.Target.IDLE,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Give up after S seconds (exit 4).")] = None,
    first: Annotated[bool, typer.Option("--any", help="Return as soon as one of them is in the state.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Block until every named task (with --any: the first of them) is in the state; print those that are."""
    with _repo(shows_only=True) as ctx:
        result = wait.wait(ctx, names, state, timeout, first=first)
    if as_json:
        _print_json(result.to_json())
        return
    for item in result.reached:
        _say(f"{item.task.name}: {item.status.state.value} ({item.status.reason})")


@app.command("inbox")
def read_inbox(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Parent task (default: the one whose pane runs this).", show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array (with --follow, one JSON object a line).")
    ] = False,
    since: Annotated[int, typer.Option("--since", help="Only the entries after this id.", min=0, metavar="ID")] = 0,
    follow: Annotated[bool, typer.Option("--follow", help="Then print new entries as they come, to Ctrl-C.")] = False,
) -> None:
    """What the task's sub-tasks reached (idle, waiting, exited), oldest first; `*` marks entries not shown before."""
    from muxagent.commands import inbox
    from muxagent.monitor import daemon

    with _repo(shows_only=True) as ctx:
        daemon.revive(ctx)  # the monitor is what writes the entries
        if not follow:
            view = inbox.read(ctx, name, since)
            if as_json:
                _print_json(view.to_json())
            else:
                print(view.text())
            return
        try:
            for view in inbox.follow(ctx, name, since):
                for line in [json.dumps(row) for row in view.to_json()] if as_json else view.lines():
                    print(line, flush=True)
        except KeyboardInterrupt:
            return  # how --follow ends: exit 0


@app.command("restart")
def restart_task(
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Task name.", show_default=False)] = None,
    every: Annotated[bool, typer.Option("--all", help="Every exited or missing task.")] = False,
) -> None:
    """Relaunch an exited or missing agent in its worktree, resuming its conversation."""
    from muxagent.commands import restart
    from muxagent.monitor import daemon

    if (name is None) == (not every):
        raise UsageError("give a task name or --all")
    with _repo() as ctx:
        if name is not None:
            task = restart.restart(ctx, name)
            print(f"restarted {task.name} in window {task.window}")
        else:
            done, skipped = restart.restart_all(ctx)
            for task_name in done:
                print(f"restarted {task_name}")
            for task_name, why in skipped.items():
                _say(f"not restarted {task_name}: {why}")
        daemon.ensure_running(ctx)


@app.command("_monitor", hidden=True)
def run_monitor() -> None:
    """The background watcher (started by mux itself)."""
    from muxagent.monitor import daemon

    sys.exit(daemon.run(Path.cwd()))


@app.command()
def peek(
    name: NameArg,
    lines: Annotated[
        int | None, typer.Option("-n", "--lines", help="Also show N lines of scrollback.", min=0, max=MAX_SCROLLBACK)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Print the agent's current screen."""
    with _repo(shows_only=True) as ctx:
        screen = interact.peek(ctx, name, lines)
    if as_json:
        _print_json(screen.to_json())
    else:
        print(screen.text())


@app.command()
def diff(
    name: NameArg,
    stat: Annotated[bool, typer.Option("--stat", help="Only the diffstat.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    turn: Annotated[
        int | None, typer.Option("--turn", help="Only what turn N changed (see `mux log`).", metavar="N")
    ] = None,
) -> None:
    """Show the task's changes against its base, committed and uncommitted (or one turn's)."""
    from muxagent.commands import turns

    with _repo(shows_only=True) as ctx:
        if turn is not None:
            changes = interact.Diff(name, turns.turn_diff(ctx, name, turn, stat=stat), stat)
        else:
            changes = interact.diff(ctx, name, stat=stat)
    if as_json:
        _print_json(changes.to_json())
    else:
        sys.stdout.write(changes.text(terminal=sys.stdout.isatty()))


@app.command()
def rm(
    name: NameArg,
    force: Annotated[bool, typer.Option("--force", help="Remove even unsaved work (a recovery ref is kept).")] = False,
    recursive: Annotated[
        bool, typer.Option("--recursive", help="Remove its sub-tasks too, deepest first, each with its recovery ref.")
    ] = False,
) -> None:
    """Remove a task: its window, worktree and branch. Refuses if work would be lost, or while it has sub-tasks."""
    with _repo() as ctx:
        removals = remove.remove_family(ctx, name, force) if recursive else [remove.remove(ctx, name, force=force)]
    for removal in removals:
        print(f"removed {removal.task.name}")
        if removal.recovery_ref:
            print(f"recovery ref: {removal.recovery_ref}")
            _say(f"restore with: {removal.restore_hint}")


@app.command()
def clean(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
) -> None:
    """Remove every task whose work is already in its base and whose agent is not busy."""
    with _repo() as ctx:
        result = remove.clean(ctx, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for name in result.removed:
        print(f"{verb} {name}")
        if name in result.restore_hints:
            _say(f"  restore with: {result.restore_hints[name]}")
    for name, why in result.kept.items():
        _say(f"kept {name}: {why}")
    if not result.removed and not result.kept:
        print("no tasks")


@app.command("agents")
def list_agents(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List agent profiles and whether each command is installed."""
    from muxagent.commands import agents

    try:
        ctx: context.Context | None = recovery.open_and_recover()
    except MuxError:
        ctx = None  # profiles are listed outside a repo too, without repo overrides
    found = agents.agents(ctx)
    if as_json:
        _print_json(found.to_json())
        return
    for line in found.lines():
        _say(line)


@app.command("doctor")
def check_health(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (the exit status still tells).")] = False,
) -> None:
    """Check tmux, git, the tmux server, the task registry and orphaned worktrees or windows."""
    from muxagent.commands import doctor

    checks = doctor.run()
    if as_json:
        _print_json(checks.to_json())
    else:
        print("\n".join(checks.lines()))
    if checks.failed:
        raise MuxError("doctor found problems")


@app.command("guide")
def print_guide() -> None:
    """Print a short text to give an agent (AGENTS.md, CLAUDE.md or a prompt) on delegating work to sub-tasks."""
    from muxagent.commands import guide

    sys.stdout.write(guide.guide({command.name for command in _completion_spec().commands}))


@app.command("completion")
def completion_script(
    shell: Annotated[str, typer.Argument(metavar="SHELL", help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the shell completion script, e.g. `source <(mux completion bash)`."""
    from muxagent.completion import scripts

    sys.stdout.write(scripts.render(shell, _completion_spec()))


@app.command("_write-completions", hidden=True)
def write_completions(
    directory: Annotated[Path | None, typer.Argument(help="Default: the checkout's completions/ folder.")] = None,
) -> None:
    """Rewrite the checked-in completion scripts, after a command or option changed. Here and not in completion/,
    which must not import this module for the app."""
    from muxagent.completion import scripts

    directory = directory or Path(__file__).resolve().parent.parent / "completions"
    if not directory.is_dir():
        raise MuxError(f"no such directory: {directory} (run this from a mux checkout, or name the folder)")
    changed = scripts.write_scripts(directory, _completion_spec())
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"{directory}: up to date")


@app.command("trust")
def trust_config(
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask, even on a terminal.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Only say whether the file is trusted.")] = False,
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the approval.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --show: print a JSON object.")] = False,
) -> None:
    """Approve this repo's .mux.toml as it is now, so its set-up commands and agent overrides may run."""
    from muxagent.commands import repo_config

    with _repo() as ctx:
        if revoke:
            print("approval withdrawn" if repo_config.revoke_trust(ctx) else "this repository had no approval")
            return
        info = repo_config.trust_info(ctx)
        if as_json:
            _print_json(info.to_json())
            return
        if show:
            print("\n".join(info.lines()))
            return
        if info.trusted:
            print(f"{info.path} is already trusted as it is (sha256 {info.sha256[:12]})")
            return
        sys.stdout.write(f"--- {info.path} (sha256 {info.sha256[:12]})\n{render.clean_text(info.text)}---\n")
        allows = ", ".join(info.code_keys) or "nothing beyond what applies untrusted"
        print(f"trusting it allows: {allows}")
        if sys.stdin.isatty() and not yes and not typer.confirm("trust this content?", default=False):
            raise MuxError("not trusted")
        repo_config.approve_config(ctx, info)
        print(f"trusted {info.path}; after any change to it, run `mux trust` again")


@app.command("init")
def init_config() -> None:
    """Write a commented .mux.toml at the root of the main checkout."""
    from muxagent.commands import repo_config

    with _repo() as ctx:
        path = repo_config.init_config(ctx)
    print(f"wrote {path}: uncomment what you need; set-up commands run once you `mux trust` it")


@app.command("logs")
def logs(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Show the task's set-up log: files copied or linked, set-up commands and their output."""
    with _repo(shows_only=True) as ctx:
        log = report.setup_log(ctx, name)
    if as_json:
        _print_json(log.to_json())
    else:
        sys.stdout.write(log.text())


@app.command("status-line")
def status_line(
    tmux_styles: Annotated[bool, typer.Option("--tmux-styles", help="Colour with tmux #[fg=...] styles.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """One line for tmux's status-right: tasks per state and the names of those that wait.

    Set it with: set -g status-right '#(cd "#{pane_current_path}" && mux status-line --tmux-styles)'
    Outside a repository it prints nothing, so the status bar stays clean.
    """
    try:
        ctx = recovery.open_and_recover()
    except MuxError:
        return
    try:
        summary = report.status_summary(ctx)
    except MuxError:
        # The status bar has no room for the message: `mux doctor` or `mux ls` tells it.
        print("mux: error (see `mux ls`)")
        return
    if as_json:
        _print_json(summary.to_json())
    else:
        print(summary.text(tmux_styles=tmux_styles))


@app.command("next-waiting")
def next_waiting(
    after: Annotated[
        str | None, typer.Option("--from", help="Window id to start after (tmux: #{window_id}).", metavar="WINDOW")
    ] = None,
) -> None:
    """Focus the next task that waits for you (bind it to a key: see the README)."""
    if after is not None and not re.fullmatch(r"@[0-9]+", after):
        raise UsageError(f"--from takes a tmux window id such as @3 (#{{window_id}}), not {after!r}")
    with _repo(shows_only=True) as ctx:
        task = report.next_waiting(ctx, after or report.current_window(ctx))
        if task is None:
            # From a key binding tmux would show any output in a pane of its own: say it only to a terminal.
            if sys.stdout.isatty():
                print("no task is waiting")
            return
        interact.attach(ctx, task.name)


# The options `mux merge` and `mux keep` share: how the task's commits land, and the message of mux's commits.
MergeFlag = Annotated[bool, typer.Option("--merge", help="A merge commit (the default).")]
SquashFlag = Annotated[bool, typer.Option("--squash", help="One commit with all of the task's changes.")]
RebaseFlag = Annotated[bool, typer.Option("--rebase", help="The task's commits replayed on the base (linear).")]
MessageOption = Annotated[
    str | None, typer.Option("-m", "--message", help="Message for mux's commits (default: the task's prompt).")
]


@app.command("merge")
def merge_cmd(
    name: NameArg,
    use_merge: MergeFlag = False,
    squash: SquashFlag = False,
    rebase: RebaseFlag = False,
    message: MessageOption = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the task (window, worktree, branch) afterwards.")] = False,
    into: Annotated[str | None, typer.Option("--into", help="Merge into this branch, not the task's base.")] = None,
    while_busy: Annotated[
        bool, typer.Option("--while-busy", help="Merge into a task whose agent is working (its files change).")
    ] = False,
    resolve_conflicts: Annotated[
        bool, typer.Option("--resolve", help="On a conflict, merge the base into the task for its agent to resolve.")
    ] = False,
    abort_resolve: Annotated[
        bool, typer.Option("--abort-resolve", help="Give up a --resolve: the task back as it was before.")
    ] = False,
    resolver: Annotated[
        str | None,
        typer.Option("-a", "--agent", help="With --resolve: a sub-task NAME-resolve running this agent resolves it."),
    ] = None,
) -> None:
    """Bring a task's work home into its base: commit its uncommitted work, merge, then remove the task.

    Refuses, changing nothing, on a conflict (exit 3: `mux sync NAME` hands it to the agent) or when the main
    checkout has local edits where the merge writes. With --resolve a conflict is merged in the task's worktree and
    handed to its agent (`ls`: resolving); `mux merge NAME` once it is idle completes the merge. With -a AGENT a
    sub-task NAME-resolve resolves it in a worktree of its own, the task left alone meanwhile. A sub-task merges
    into its parent's branch, in the parent's worktree: the same checks there, and refused while the parent's agent
    is working unless it asked (run from its pane) or with --while-busy.
    """
    from muxagent.commands import merge, resolve

    request = merge.MergeRequest(name, _strategy(use_merge, squash, rebase, message), message, keep, into, while_busy)
    if resolve_conflicts and (abort_resolve or rebase):
        raise UsageError("--resolve merges the base into the task: give it without --abort-resolve or --rebase")
    if resolver is not None and not resolve_conflicts:
        raise UsageError("-a names the agent that resolves a conflict: give it with --resolve")
    if abort_resolve:
        with _repo() as ctx:
            attempt = resolve.abort_resolve(ctx, name)
        kept = f"the attempt is kept in {attempt}" if attempt else "its resolver was removed already"
        _say(f"{name} is back as it was before --resolve; {kept}")
        return
    with _repo() as ctx, _conflicts_listed(), _progress() as progress:
        outcome = resolve.merge_or_resolve(ctx, request, resolve_conflicts, progress, resolver)
    if isinstance(outcome, resolve.Resolving):
        _say_resolving(outcome)
        return
    _say_merged(name, outcome)


def _say_resolving(outcome: resolve.Resolving) -> None:
    for path in outcome.conflicts:
        print(render.clean_line(path))
    name, by = outcome.task.name, outcome.resolver
    to = f"its agent in {outcome.task.worktree}" if by is None else f"{by.name} ({by.agent}) in {by.worktree}"
    _say(
        f"{name}: {len(outcome.conflicts)} conflicting file(s) handed to {to}; `mux merge {name}` once it is idle"
        f" (or `mux merge {name} --abort-resolve`)"
    )


def _strategy(use_merge: bool, squash: bool, rebase: bool, message: str | None) -> merge.Strategy:
    """The one strategy the flags choose (and the message checked): `mux merge` and `mux keep` take the same."""
    from muxagent.commands import merge

    if message is not None:
        naming.validate_prompt(message, what="message")
    chosen = [how for how, on in zip(merge.Strategy, (use_merge, squash, rebase), strict=True) if on]
    if len(chosen) > 1:
        raise UsageError("give only one of --merge, --squash, --rebase")
    return chosen[0] if chosen else merge.Strategy.MERGE


@contextmanager
def _conflicts_listed() -> Iterator[None]:
    """A refused merge's conflicting paths on stdout, one a line, before its message (exit 3)."""
    try:
        yield
    except MergeConflictError as exc:
        for path in exc.paths:
            print(render.clean_line(path))
        raise


def _say_merged(name: str, result: merge.MergeResult) -> None:
    if result.new == result.old:
        _say(f"nothing of {name} to merge: {result.target} already has all of it")
    else:
        _say(f"merged {name} into {result.target} ({result.strategy.done} {result.new[:12]})")
    if result.removal is not None:
        print(f"removed {name}")
        if result.removal.restore_hint:
            _say(f"restore with: {result.removal.restore_hint}")
    if result.synced is not None and not result.synced.empty:
        sys.stdout.write(result.synced.text())
    if result.behind:
        _say(f"behind {result.target} now: {', '.join(result.behind)} (update one with `mux sync NAME`)")


@app.command("compare")
def compare_group(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Run the repository's `check` command (.mux.toml) in each member.")
    ] = False,
    diff_pair: Annotated[
        tuple[str, str] | None,
        typer.Option("--diff", help="Show the diff from member A to member B.", metavar="A B"),
    ] = None,
) -> None:
    """Compare the members of a group (`mux new NAME -n N`): state, time to first idle, commits, files, lines,
    the files only one touched, how alike their changes are, and with --check the repository's check."""
    from muxagent.commands import compare

    with _repo(shows_only=True) as ctx:
        if diff_pair is not None:
            changes = compare.diff_between(ctx, name, *diff_pair)
            if as_json:
                _print_json(changes.to_json())
            else:
                sys.stdout.write(changes.text(terminal=sys.stdout.isatty()))
            return
        with _progress() as progress:
            if check:
                progress(f"running the check in each member of {name}")
            result = compare.compare(ctx, name, run_checks=check)
    if as_json:
        _print_json(result.to_json())
    else:
        print(result.text())


@app.command("keep")
def keep_member(
    name: NameArg,
    use_merge: MergeFlag = False,
    squash: SquashFlag = False,
    rebase: RebaseFlag = False,
    message: MessageOption = None,
) -> None:
    """Keep the winner of a group: merge it as `mux merge` does (exit 3 on a conflict, nothing changed), then
    remove the other members, each with a recovery ref first (`mux restore NAME` brings one back)."""
    from muxagent.commands import keep

    strategy = _strategy(use_merge, squash, rebase, message)
    with _repo() as ctx, _conflicts_listed(), _progress() as progress:
        result = keep.keep(ctx, name, strategy, message, progress)
    _say_merged(name, result.merged)
    for removal in result.removed:
        hint = f" (restore with: {removal.restore_hint})" if removal.restore_hint else ""
        print(f"removed {removal.task.name}{hint}")
    for other, why in result.kept.items():
        _say(f"kept {other}: {why}")


@app.command("sync")
def sync_task(
    name: Annotated[str | None, typer.Argument(help="Task name.", metavar="[NAME]", show_default=False)] = None,
    rebase: Annotated[bool, typer.Option("--rebase", help="Rebase the task's commits instead of merging.")] = False,
    ask: Annotated[bool, typer.Option("--ask", help="On a conflict, ask the agent to resolve it.")] = False,
    every: Annotated[
        bool, typer.Option("--all", help="Sync every idle task behind its base whose sync is clean.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --all: say what would be synced.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --all: machine-readable output.")] = False,
) -> None:
    """Bring the base's new commits into the task's branch, in the task's worktree.

    A conflict stays in the task's worktree (never in yours) and the task shows as waiting: exit 3. With --all,
    every task that is idle and behind is synced if its merge is clean; the others are listed, untouched.
    """
    from muxagent.commands import sync

    if every:
        if name is not None or rebase or ask:
            raise UsageError("--all syncs every task by a merge: give no NAME, --rebase or --ask with it")
        with _repo() as ctx, _progress() as progress:
            summary = sync.sync_all(ctx, dry_run=dry_run, progress=progress)
        if as_json:
            _print_json(summary.to_json())
        else:
            sys.stdout.write(summary.text())
        return
    if name is None or dry_run or as_json:
        raise UsageError("give a task NAME, or --all (--dry-run and --json go with --all)")
    with _repo() as ctx, _progress() as progress:
        result = sync.sync(ctx, name, rebase=rebase, ask=ask, progress=progress)
    if result.up_to_date:
        _say(f"{name} is up to date with {result.task.base}")
        return
    if not result.conflicts:
        _say(f"synced {name} with {result.task.base}")
        return
    for path in result.conflicts:
        print(render.clean_line(path))
    asked = "; the agent was asked to resolve them" if result.asked else f" (`mux sync {name} --ask` asks its agent)"
    raise MergeConflictError(
        f"{name}: {len(result.conflicts)} conflicting file(s) left in {result.task.worktree} to resolve{asked}",
        result.conflicts,
    )


@app.command("restore")
def restore_task(
    name: NameArg,
    at: Annotated[
        str | None, typer.Option("--at", help="The recovery ref's UTC timestamp (default: the latest).")
    ] = None,
) -> None:
    """Recreate a removed task from its recovery ref: branch, worktree with its uncommitted files, window."""
    from muxagent.commands import restore

    with _repo() as ctx, _progress() as progress:
        restored = restore.restore(ctx, name, at=at, progress=progress)
    task = restored.task
    files = " with its uncommitted files" if restored.with_files else ""
    _say(f"restored {task.name} from {restored.ref}{files}: {task.worktree} (window {task.window})")
    for sub in restored.submodules:
        if sub.problem is None:
            _say(f"submodule {sub.path}: restored from {sub.ref}")
        else:
            _say(f"submodule {sub.path}: not restored: {sub.problem}")


@app.command("gc")
def drop_recovery_refs(
    older_than: Annotated[
        float, typer.Option("--older-than", help="Drop recovery refs older than this many days.", metavar="DAYS")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be dropped.")] = False,
) -> None:
    """Drop old recovery refs and removed tasks' old checkpoints: the only command that does."""
    from muxagent.commands import gc

    with _repo() as ctx:
        dropped = gc.gc(ctx, older_than, dry_run=dry_run)
    verb = "would drop" if dry_run else "dropped"
    for ref in dropped:
        print(f"{verb} {ref}")
    if not dropped:
        print(f"no recovery ref is older than {older_than:g} days")


# Turns: `mux log` and `mux undo` (issue 16), read from the checkpoints the monitor takes as each turn ends.
@app.command("log")
def turn_log(
    name: NameArg,
    patch: Annotated[bool, typer.Option("-p", "--patch", help="Show each turn's diff.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """One line per turn: number, time, prompt, files and lines changed, the agent's summary."""
    from muxagent.commands import turns

    with _repo(shows_only=True) as ctx:
        found = turns.log(ctx, name, patch=patch)
    if as_json:
        _print_json(found.to_json())
    else:
        sys.stdout.write(found.text())


@app.command("undo")
def undo_turn(
    name: NameArg,
    to: Annotated[
        int | None,
        typer.Option("--to", help="The turn to go back to (default: one back; 0: as the task started).", metavar="N"),
    ] = None,
    tell: Annotated[bool, typer.Option("--tell", help="Tell the agent which turn's files it now sees.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Put the task's files back as they were at the end of a turn (a checkpoint of now first: undo can be undone)."""
    from muxagent.commands import turns

    with _repo() as ctx:
        undone = turns.undo(ctx, name, to=to, tell=tell)
    if as_json:
        _print_json(undone.to_json())
    else:
        for line in undone.lines():
            _say(line)


host_app = typer.Typer(
    name="host", help="The hosts a task can run on, over SSH.", no_args_is_help=True, add_completion=False,
    rich_markup_mode=None,
)  # fmt: skip
app.add_typer(host_app)


@host_app.command("add")
def host_add(
    name: Annotated[str, typer.Argument(help="Host name (the task-name rules).", metavar="NAME")],
    address: Annotated[str, typer.Argument(help="[USER@]HOST[:PORT]", metavar="ADDRESS")],
    path: Annotated[str | None, typer.Option("--path", help="Where mux keeps repositories there.")] = None,
    ssh_option: Annotated[
        list[str] | None, typer.Option("--ssh-option", help="An ssh option for this host, KEY=VALUE (repeatable).")
    ] = None,
    ssh_timeout: Annotated[
        float | None, typer.Option("--ssh-timeout", help="Seconds before the host counts as unreachable (5).")
    ] = None,
) -> None:
    """Record a host in $XDG_CONFIG_HOME/mux/hosts.toml."""
    from muxagent.commands import hosts

    host = hosts.add(name, address, path, list(ssh_option or ()), ssh_timeout)
    _say(f"host {host.name}: {host.address}, repositories in {host.path}")


@host_app.command("ls")
def host_ls(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """List the recorded hosts."""
    from muxagent.commands import hosts

    found = hosts.listed()
    if as_json:
        _print_json(found.to_json())
    else:
        _say_lines(found.text())


@host_app.command("rm")
def host_rm(name: Annotated[str, typer.Argument(help="Host name.", metavar="NAME")]) -> None:
    """Forget a host (refused while this repository has tasks there)."""
    from muxagent.commands import hosts

    tasks_on: list[str] = []
    try:
        ctx = context.open_repo()
    except MuxError:
        pass  # outside a repository: no task of this one can be there
    else:
        tasks_on = [task.name for task in context.load_tasks(ctx) if task.host == name]
    hosts.remove(name, tasks_on)
    print(f"removed host {name}")


@host_app.command("check")
def host_check(
    name: Annotated[str, typer.Argument(help="Host name.", metavar="NAME")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Check that the host can take tasks: reachable, git >= 2.38, tmux >= 3.2, mux there, disk free."""
    from muxagent.commands import hosts

    found = hosts.check(name)
    if as_json:
        _print_json(found.to_json())
    else:
        _say_lines(found.text())
    if not found.ok:
        raise MuxError(f"host {name} cannot take tasks")


def _say_lines(text: str) -> None:
    for line in text.split("\n"):
        _say(line)


def main() -> None:
    # A path that is not UTF-8 is held as surrogates: print its own bytes, as ls and git do, rather than die on a
    # UTF-8 terminal's strict stdout.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    # Every way out is one line on stderr and an exit code, never a traceback (README, "Exit codes").
    try:
        code = _app_for(sys.argv[1:2])(prog_name="mux", standalone_mode=False)
    except MuxError as exc:
        render.stderr_line(str(exc))
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        sys.exit(_usage_error(exc))
    except typer.Abort:
        render.stderr_line("aborted")
        sys.exit(1)
    except OSError as exc:
        # A file no MuxError named (a disk that filled or went read-only half-way): say which and why.
        where = f"{exc.filename}: " if exc.filename else ""
        render.stderr_line(f"{where}{exc.strerror or exc}")
        sys.exit(1)
    except Exception as exc:
        log = _log_traceback(exc)
        kept = f"the traceback is in {log}" if log else "no log could be written"
        render.stderr_line(f"internal error: {type(exc).__name__}: {exc} (a bug in mux: {kept}; please report it)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _app_for(first: list[str]) -> typer.Typer:
    """The app with only the command `first` names (with the options of `mux` itself): typer builds the parser of
    every registered command on each run, 43 ms for the 31 of them against 2 ms for one, measured here. Any other
    first word (none, an option, an unknown command, a prefix) takes the whole app, its help and its errors."""
    chosen = [info for info in app.registered_commands if first and _command_name(info) == first[0]]
    if len(chosen) != 1:
        return app
    one = typer.Typer(
        name=app.info.name, help=app.info.help, no_args_is_help=True, add_completion=False,
        pretty_exceptions_enable=False, rich_markup_mode=None,
    )  # fmt: skip
    one.registered_callback = app.registered_callback
    one.registered_commands = chosen
    return one


def _command_name(info: typer.models.CommandInfo) -> str:
    assert info.callback is not None
    return info.name if info.name is not None else typer.main.get_command_name(info.callback.__name__)


CRASH_LOG = "mux.log"


def _log_traceback(exc: Exception) -> Path | None:
    """Append the traceback to `<git-common-dir>/mux/mux.log` (else the user's state dir): the user sees one line,
    the bug report gets the whole story. None when no log could be written (a full disk, a read-only home)."""
    import traceback
    from datetime import UTC, datetime

    from muxagent.git import repository
    from muxagent.state import trust

    entry = f"--- {datetime.now(UTC).isoformat(timespec='seconds')} mux {' '.join(sys.argv[1:])}\n" + "".join(
        traceback.format_exception(exc)
    )

    def repo_state_dir() -> Path:
        return repository.discover(Path.cwd()).common_dir / "mux"

    for folder in (repo_state_dir, trust.state_dir):
        try:
            path = folder() / CRASH_LOG
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8", errors="backslashreplace") as log:
                log.write(entry)
        except (MuxError, OSError):
            continue
        return path
    return None


def _usage_error(exc: typer.TyperException) -> int:
    """Click's usage errors as one line (its own form takes four); `mux` alone still prints the help."""
    message = exc.format_message()
    if "\n" in message:
        sys.stderr.write(message + "\n")
        return exc.exit_code
    context = getattr(exc, "ctx", None)
    command = getattr(context, "command_path", "mux")
    render.stderr_line(f"{message[:1].lower()}{message[1:].rstrip('.')} (see `{command} --help`)")
    return exc.exit_code
