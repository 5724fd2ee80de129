"""What the completion scripts know about the CLI: its commands, options and arguments, read from the CLI's
click command (the CLI hands it over: typer stays in its one room) into a CompletionSpec, and the pieces every
shell's script renders alike.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from muxagent.completion.fast import TASKS_COMMAND

if TYPE_CHECKING:
    from collections.abc import Iterable

SHELLS = ("bash", "zsh", "fish")

# Words that end up unquoted inside the generated scripts; spec_from_command output is checked against them.
_SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SAFE_FLAG = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9_-]*")

# Commands whose NAME argument names a task that does not exist (yet, or any more): offering the live tasks
# there would only offer names the command refuses.
_NEW_NAME_COMMANDS = frozenset({"new", "restore"})
# The group whose commands' NAME is a recorded host's (`mux host rm NAME`), but for the one that records it.
_HOST_GROUP, _NEW_HOST_COMMAND = "host", "add"


ValueKind = Literal["none", "task", "host", "file", "dir", "choice"]


class Value(NamedTuple):
    """What an argument or an option's value holds, i.e. what TAB offers there."""

    kind: ValueKind
    choices: tuple[str, ...] = ()


NO_VALUE = Value("none")


class OptionSpec(NamedTuple):
    flags: tuple[str, ...]  # e.g. ("-a", "--agent")
    help: str
    value: Value | None  # None for a flag that takes no value


class ArgSpec(NamedTuple):
    name: str
    value: Value
    variadic: bool  # takes every remaining positional word (NAME...)


class CommandSpec(NamedTuple):
    name: str
    help: str
    options: tuple[OptionSpec, ...]
    args: tuple[ArgSpec, ...]
    commands: tuple[CommandSpec, ...] = ()  # a group's (`mux host add`): its first word names one of them


class CompletionSpec(NamedTuple):
    prog: str
    options: tuple[OptionSpec, ...]  # options before the command, e.g. --help
    commands: tuple[CommandSpec, ...]  # visible commands, in the CLI's order


def spec_from_command(group: Any, prog: str = "mux") -> CompletionSpec:
    """Read the commands, options and arguments of a click group (typer's `get_command(app)`) into a
    CompletionSpec. typer's command objects are typed as click's, but typer >= 0.2x ships its own click-like
    classes; both have the attributes read here, so the group is read as Any."""
    help_names = tuple(group.context_settings.get("help_option_names", ["--help"]))
    spec = CompletionSpec(prog=prog, options=_options(group, help_names), commands=_commands(group, help_names))
    _check_words(spec)
    return spec


def _commands(group: Any, help_names: tuple[str, ...], within: str | None = None) -> tuple[CommandSpec, ...]:
    """The visible commands of `group` (named `within`, for a sub-group), a sub-group's with its own."""
    commands = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        help_flags = tuple(command.context_settings.get("help_option_names", help_names))
        params = command.params
        commands.append(
            CommandSpec(
                name=name,
                help=_first_line(command.short_help or command.help),
                options=_options(command, help_flags),
                args=tuple(_argument(name, p, within) for p in params if p.param_type_name == "argument"),
                commands=_commands(command, help_flags, name) if hasattr(command, "commands") else (),
            )
        )
    return tuple(commands)


def _options(command: Any, help_flags: tuple[str, ...]) -> tuple[OptionSpec, ...]:
    options = [
        OptionSpec(
            flags=(*p.opts, *p.secondary_opts),
            help=_first_line(p.help),
            value=None if p.is_flag or p.count else Value("host") if p.name == "host" else _value_of(p),
        )
        for p in command.params
        if p.param_type_name == "option" and not p.hidden
    ]
    if command.add_help_option and help_flags:
        options.append(OptionSpec(flags=help_flags, help="Show the help and exit", value=None))
    return tuple(options)


def _argument(command: str, param: Any, within: str | None) -> ArgSpec:
    metavar = (param.metavar or param.name or "").upper()
    value = _value_of(param)
    if within == _HOST_GROUP and param.name == "name":
        value = Value("none" if command == _NEW_HOST_COMMAND else "host")
    elif within is not None:
        pass  # a sub-group's NAME is not a task's
    elif (
        value.kind == "none"
        and command not in _NEW_NAME_COMMANDS
        and (metavar.startswith("NAME") or param.name in ("name", "names"))
    ):
        value = Value("task")
    elif value.kind == "none" and metavar == "SHELL":
        # `mux completion SHELL` takes a plain str, so that render() owns the one message for an unknown shell.
        value = Value("choice", SHELLS)
    return ArgSpec(name=(param.name or "arg").lower(), value=value, variadic=param.nargs == -1)


def _value_of(param: Any) -> Value:
    kind: Any = getattr(param, "type", None)  # click's parameter types (typer vendors click from 0.27)
    choices = getattr(kind, "choices", None)
    if choices is not None:
        return Value("choice", tuple(str(getattr(c, "value", c)) for c in choices))
    if type(kind).__name__ == "File":
        return Value("file")
    if hasattr(kind, "dir_okay") and hasattr(kind, "file_okay"):  # click's Path, typer's TyperPath
        return Value("dir" if kind.dir_okay and not kind.file_okay else "file")
    return NO_VALUE


def _first_line(text: str | None) -> str:
    line = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
    return line.removesuffix(".")


def _check_words(spec: CompletionSpec) -> None:
    # Command names, flags and choices are written unquoted into case patterns and word lists.
    every = [*spec.commands, *(sub for command in spec.commands for sub in command.commands)]
    for command in every:
        if not _SAFE_WORD.fullmatch(command.name):
            raise ValueError(f"command name {command.name!r} cannot go into a completion script")
    options = [o for c in every for o in c.options] + list(spec.options)
    for option in options:
        for flag in option.flags:
            if not _SAFE_FLAG.fullmatch(flag):
                raise ValueError(f"option {flag!r} cannot go into a completion script")
    values = [o.value for o in options if o.value] + [a.value for c in every for a in c.args]
    for value in values:
        for choice in value.choices:
            if not _SAFE_WORD.fullmatch(choice):
                raise ValueError(f"choice {choice!r} cannot go into a completion script")


# --- what every script renders alike ------------------------------------------------------------------------


def header(shell: str, spec: CompletionSpec, install: Iterable[str]) -> list[str]:
    """The comment lines a script opens with: generated, how to install it, where task names come from."""
    lines = [f"# generated by `{spec.prog} completion {shell}`; do not edit."]
    lines += [f"# {line}" for line in install]
    lines.append(f"# Task names come from `{spec.prog} {TASKS_COMMAND}`, which answers before the CLI is even loaded.")
    return lines


def valued_flags(options: Iterable[OptionSpec]) -> list[tuple[str, Value]]:
    """Each flag that takes a value, with what the value holds."""
    return [(flag, o.value) for o in options if o.value is not None for flag in o.flags]


def ident(prog: str) -> str:
    """The program's name as it can appear in a shell function's name."""
    return re.sub(r"\W", "_", prog)
