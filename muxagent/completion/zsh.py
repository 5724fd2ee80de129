"""The zsh completion script: an `_arguments` spec per command, autoloadable from $fpath or sourced."""

from __future__ import annotations

import re

from muxagent.completion.fast import HOSTS_COMMAND, TASKS_COMMAND
from muxagent.completion.spec import CommandSpec, CompletionSpec, OptionSpec, Value, header, ident


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _action(value: Value, fn: str) -> str:
    if value.kind == "task":
        return f"{fn}_tasks"
    if value.kind == "host":
        return f"{fn}_hosts"
    if value.kind == "file":
        return "_files"
    if value.kind == "dir":
        return "_files -/"
    if value.kind == "choice":
        return f"({' '.join(value.choices)})"
    return " "  # a message and no candidates


def _describe(text: str) -> str:
    # Inside an _arguments spec the description is bracketed and the parts are ':'-separated.
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _specs(command: CommandSpec | None, options: tuple[OptionSpec, ...], fn: str) -> list[str]:
    specs = []
    for option in options:
        group = f"({' '.join(option.flags)})" if len(option.flags) > 1 else ""
        if "--help" in option.flags:
            group = "(- *)"  # after --help nothing else matters
        value = ""
        if option.value is not None:
            label = option.flags[-1].lstrip("-")
            value = f":{label}:{_action(option.value, fn)}"
        for flag in option.flags:
            # `--opt=` / `-o+`: the value may be the next word, or follow in the same word (after '=' for a long
            # option), as click accepts.
            name = flag if not value else f"{flag}=" if flag.startswith("--") else f"{flag}+"
            specs.append(_quote(f"{group}{name}[{_describe(option.help)}]{value}"))
    if command is not None:
        for position, arg in enumerate(command.args, start=1):
            where = "*" if arg.variadic else str(position)
            specs.append(_quote(f"{where}:{arg.name}:{_action(arg.value, fn)}"))
    return specs


def _case(command: CommandSpec, prog: str, fn: str, indent: str) -> str:
    """The branch of `case $words[1]` that completes `command`'s words: its `_arguments`, or for a group the
    choice of its commands, then theirs, as the top level does."""
    continuation = " \\\n" + indent + "  "
    if not command.commands:
        specs = _specs(command, command.options, fn)
        return (
            f"{indent}{command.name})\n{indent}  _arguments{continuation}"
            + continuation.join(specs)
            + (f" && ret=0\n{indent}  ;;")
        )
    specs = [*_specs(None, command.options, fn), "'1:command:->sub'", "'*::argument:->subargument'"]
    described = "".join(f" {_quote(sub.name + ':' + sub.help)}" for sub in command.commands)
    inner = "\n".join(_case(sub, prog, fn, indent + "        ") for sub in command.commands)
    return f"""{indent}{command.name})
{indent}  _arguments -C{continuation}{continuation.join(specs)} && ret=0
{indent}  case $state in
{indent}    sub)
{indent}      local -a subs
{indent}      subs=({described.strip()})
{indent}      _describe -t commands '{prog} {command.name} command' subs && ret=0
{indent}      ;;
{indent}    subargument)
{indent}      curcontext=${{curcontext%:*:*}}:{prog}-{command.name}-$words[1]:
{indent}      case $words[1] in
{inner}
{indent}      esac
{indent}      ;;
{indent}  esac
{indent}  ;;"""


def script(spec: CompletionSpec) -> str:
    fn = f"_{ident(spec.prog)}"
    head = header(
        "zsh",
        spec,
        [
            f"Save it as {fn} in a directory on $fpath before compinit runs,",
            f"or load it after compinit with: source <({spec.prog} completion zsh)",
        ],
    )
    continuation = " \\\n        "
    root_specs = [*_specs(None, spec.options, fn), "'1:command:->command'", "'*::argument:->argument'"]
    described = "\n".join(f"        {_quote(c.name + ':' + c.help)}" for c in spec.commands)
    cases = [_case(command, spec.prog, fn, "        ") for command in spec.commands]
    body = f"""
{fn}_tasks() {{
  local -a tasks
  tasks=(${{(f)"$(_call_program tasks command {spec.prog} {TASKS_COMMAND} 2>/dev/null)"}})
  _wanted tasks expl 'task' compadd -a tasks
}}

{fn}_hosts() {{
  local -a hosts
  hosts=(${{(f)"$(_call_program hosts command {spec.prog} {HOSTS_COMMAND} 2>/dev/null)"}})
  _wanted hosts expl 'host' compadd -a hosts
}}

{fn}() {{
  local curcontext=$curcontext state line ret=1
  typeset -A opt_args
  _arguments -C{continuation}{continuation.join(root_specs)} && ret=0
  case $state in
    command)
      local -a commands
      commands=(
{described}
      )
      _describe -t commands '{spec.prog} command' commands && ret=0
      ;;
    argument)
      curcontext=${{curcontext%:*:*}}:{spec.prog}-$words[1]:
      case $words[1] in
{chr(10).join(cases)}
      esac
      ;;
  esac
  return ret
}}

# Autoloaded from $fpath this file is the body of {fn}: define, then complete; sourced, register.
if [[ $funcstack[1] == {fn} ]]; then
  {fn} "$@"
else
  compdef {fn} {spec.prog}
fi
"""
    # zsh's autoloader reads the #compdef line only if it is the very first line.
    return f"#compdef {spec.prog}\n" + "\n".join(head) + "\n" + body
