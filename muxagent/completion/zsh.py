"""The zsh completion script: an `_arguments` spec per command, autoloadable from $fpath or sourced."""

from __future__ import annotations

import re

from muxagent.completion.fast import TASKS_COMMAND
from muxagent.completion.spec import CommandSpec, CompletionSpec, OptionSpec, Value, header, ident


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _action(value: Value, fn: str) -> str:
    if value.kind == "task":
        return f"{fn}_tasks"
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
    cases = []
    for command in spec.commands:
        specs = _specs(command, command.options, fn)
        cases.append(
            f"        {command.name})\n"
            f"          _arguments{continuation}  " + (continuation + "  ").join(specs) + " && ret=0\n"
            "          ;;"
        )
    body = f"""
{fn}_tasks() {{
  local -a tasks
  tasks=(${{(f)"$(_call_program tasks command {spec.prog} {TASKS_COMMAND} 2>/dev/null)"}})
  _wanted tasks expl 'task' compadd -a tasks
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
