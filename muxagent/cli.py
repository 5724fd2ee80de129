"""The `mux` command line: parse arguments, call `tasks`, print. The only module that exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from muxagent import render, tasks
from muxagent.errors import MuxError, UsageError

app = typer.Typer(
    name="mux",
    help="Run several coding agents on one repository: a git worktree, a branch and a tmux window per task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(help="Task name.", metavar="NAME", show_default=False)]


class Interrupted(MuxError):
    exit_code = 130


@contextmanager
def _repo() -> Iterator[tasks.Context]:
    ctx = tasks.open_repo()
    try:
        yield ctx
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    finally:
        for note in ctx.notes:
            render.stderr_line(note)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
def new(
    name: NameArg,
    agent: Annotated[str | None, typer.Option("-a", "--agent", help="Profile name or a command line.")] = None,
    prompt: Annotated[str | None, typer.Option("-p", "--prompt", help="First prompt for the agent.")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the first prompt from a file.", dir_okay=False)
    ] = None,
    base: Annotated[str | None, typer.Option("--base", help="Branch or commit to start from.")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Focus the task's window afterwards.")] = False,
) -> None:
    """Start a task: worktree and branch mux/NAME, a tmux window, the agent running in it."""
    if prompt is not None and prompt_file is not None:
        raise UsageError("give either --prompt or --prompt-file, not both")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read prompt file {prompt_file}: {exc.strerror}") from None
    with _repo() as ctx:
        task = tasks.new_task(ctx, tasks.NewRequest(name=name, agent=agent, prompt=prompt, base=base))
        print(f"{task.name}: {task.agent} in {task.worktree} (branch {task.branch}, window {task.window})")
        if attach:
            tasks.attach(ctx, task.name)


@app.command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List tasks: state, changes, commits ahead/behind, age."""
    with _repo() as ctx:
        reports = tasks.list_reports(ctx)
    if as_json:
        _print_json([render.json_row(item) for item in reports])
    elif reports:
        print(render.table(reports, colour=render.use_colour(sys.stdout)))
    else:
        print("no tasks (start one with `mux new NAME`)")


@app.command()
def attach(name: NameArg) -> None:
    """Focus the task's window (switch-client inside tmux, attach outside)."""
    with _repo() as ctx:
        tasks.attach(ctx, name)


@app.command()
def send(
    name: NameArg,
    text: Annotated[str, typer.Argument(help="Text to deliver verbatim, followed by Enter.", show_default=False)],
) -> None:
    """Deliver a prompt to the task's agent exactly as written."""
    with _repo() as ctx:
        tasks.send(ctx, name, text)


@app.command()
def peek(
    name: NameArg,
    lines: Annotated[int | None, typer.Option("-n", "--lines", help="Also show N lines of scrollback.")] = None,
) -> None:
    """Print the agent's current screen."""
    with _repo() as ctx:
        screen = tasks.peek(ctx, name, lines)
    print(render.clean_text(screen))


@app.command()
def diff(
    name: NameArg,
    stat: Annotated[bool, typer.Option("--stat", help="Only the diffstat.")] = False,
) -> None:
    """Show the task's changes against its base, committed and uncommitted."""
    with _repo() as ctx:
        sys.stdout.write(tasks.diff(ctx, name, stat=stat))


@app.command()
def rm(
    name: NameArg,
    force: Annotated[bool, typer.Option("--force", help="Remove even unsaved work (a recovery ref is kept).")] = False,
) -> None:
    """Remove a task: its window, worktree and branch. Refuses if work would be lost."""
    with _repo() as ctx:
        removal = tasks.remove(ctx, name, force=force)
    print(f"removed {name}")
    if removal.recovery_ref:
        print(f"recovery ref: {removal.recovery_ref}")
        print(f"restore with: {removal.restore_hint}")


@app.command()
def clean(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
) -> None:
    """Remove every task whose work is already in its base and whose agent is not busy."""
    with _repo() as ctx:
        result = tasks.clean(ctx, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for name in result.removed:
        print(f"{verb} {name}")
    for name, why in result.kept.items():
        print(f"kept {name}: {why}")
    if not result.removed and not result.kept:
        print("no tasks")


@app.command()
def agents(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List agent profiles and whether each command is installed."""
    try:
        ctx: tasks.Context | None = tasks.open_repo()
    except MuxError:
        ctx = None  # profiles are listed outside a repo too, without repo overrides
    rows = tasks.agents(ctx)
    if as_json:
        _print_json([{"name": p.name, "command": list(p.command), "path": path} for p, path in rows])
        return
    for profile, path in rows:
        print(f"{profile.name:<10} {' '.join(profile.command):<24} {path or 'not installed'}")


@app.command()
def doctor() -> None:
    """Check tmux, git, the tmux server, the task registry and orphaned worktrees or windows."""
    checks = tasks.doctor(Path.cwd())
    for check in checks:
        mark = "ok" if check.ok else ("FAIL" if check.fatal else "warn")
        print(f"{mark:<5} {check.name}: {render.clean_text(check.detail)}")
    if any(not check.ok and check.fatal for check in checks):
        raise MuxError("doctor found problems")


def main() -> None:
    # typer reports usage errors itself (exit 2); mux's own errors become one line and their exit code here.
    try:
        app(prog_name="mux")
    except MuxError as exc:
        render.stderr_line(str(exc))
        sys.exit(exc.exit_code)
