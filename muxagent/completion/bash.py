"""The bash completion script: one generic function that reads each command's facts from a case table."""

from __future__ import annotations

from muxagent.completion.fast import HOSTS_COMMAND, TASKS_COMMAND
from muxagent.completion.spec import (
    ArgSpec,
    CommandSpec,
    CompletionSpec,
    OptionSpec,
    Value,
    header,
    ident,
    valued_flags,
)


def _kind(value: Value) -> str:
    return f"choice={'|'.join(value.choices)}" if value.kind == "choice" else value.kind


def _data(options: tuple[OptionSpec, ...], args: tuple[ArgSpec, ...], subs: tuple[CommandSpec, ...] = ()) -> str:
    # The per-command facts the generic code in _prog reads: its options, the ones that take a value (with what
    # the value holds, as " FLAG=KIND "), the positional arguments' kinds, the kind of any extra ones, and a
    # group's commands (its first positional word).
    flags = " ".join(flag for o in options for flag in o.flags)
    valued = "".join(f" {flag}={_kind(value)}" for flag, value in valued_flags(options))
    fixed = [a for a in args if not a.variadic]
    rest = next((_kind(a.value) for a in args if a.variadic), "")
    kinds = " ".join(_kind(a.value) for a in fixed)
    names = " ".join(sub.name for sub in subs)
    return f"opts='{flags}' valued='{valued} ' args='{kinds}' rest='{rest}' subs='{names}'"


def script(spec: CompletionSpec) -> str:
    fn = f"_{ident(spec.prog)}"
    names = " ".join(c.name for c in spec.commands)
    cases = "\n".join(f"                {c.name}) {_data(c.options, c.args, c.commands)} ;;" for c in spec.commands)
    sub_cases = "\n".join(
        f"                {c.name}/{sub.name}) {_data(sub.options, sub.args)} ;;"
        for c in spec.commands
        for sub in c.commands
    )
    head = header(
        "bash",
        spec,
        [
            f"Load it from ~/.bashrc with: source <({spec.prog} completion bash)",
            f"or save it as ~/.local/share/bash-completion/completions/{spec.prog}",
        ],
    )
    body = f"""
{fn}_tasks() {{
    local prog=${{COMP_WORDS[0]}}
    # Ask the {spec.prog} being completed if it was typed as a path (./venv/bin/{spec.prog}), else the one on PATH.
    [[ $prog == */* && -x $prog ]] || prog={spec.prog}
    command "$prog" "${{1:-{TASKS_COMMAND}}}" 2>/dev/null
}}

# {fn}_add KIND: add the candidates for a word of KIND (task, host, file, dir, none, choice=A|B) that start with
# $cur.
{fn}_add() {{
    local word
    case $1 in
        task | host)
            while IFS= read -r word; do
                [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
            done < <({fn}_tasks "$([[ $1 == host ]] && echo {HOSTS_COMMAND})")
            ;;
        file)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            ;;
        dir)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            ;;
        choice=*)
            local IFS='|'
            for word in ${{1#choice=}}; do
                [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
            done
            ;;
    esac
}}

{fn}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd= {_data(spec.options, ())}
    local i word n=0 dd= kind opt= sub=
    COMPREPLY=()
    # Walk the words before the cursor: find the command, skip options and their values, count positionals.
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word=${{COMP_WORDS[i]}}
        if [[ -z $dd && $word == -- ]]; then
            dd=1
        elif [[ -z $dd && $word == -* ]]; then
            if [[ $valued == *" $word="* ]]; then
                # The value is the next word; bash splits --opt=value into three words at the '='.
                [[ ${{COMP_WORDS[i+1]}} == = ]] && (( i += 1 ))
                (( i += 1 ))
            fi
        elif [[ -z $cmd ]]; then
            cmd=$word
            case $cmd in
{cases}
                *) return 0 ;;
            esac
        elif [[ -n $subs && -z $sub ]]; then
            sub=$word
            case $cmd/$sub in
{sub_cases}
                *) return 0 ;;
            esac
        else
            n=$(( n + 1 ))
        fi
    done
    # An option's value: `--opt <TAB>`, `--opt=<TAB>` (cur is '=') or `--opt=x<TAB>` (prev is '=').
    if [[ -z $dd ]]; then
        if [[ $cur == = && $prev == -* ]]; then
            opt=$prev cur=
        elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then
            opt=${{COMP_WORDS[COMP_CWORD-2]}}
        elif [[ $prev == -* ]]; then
            opt=$prev
        fi
        if [[ -n $opt && $valued == *" $opt="* ]]; then
            kind=${{valued#*" $opt="}}
            {fn}_add "${{kind%% *}}"
            return 0
        fi
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$opts" -- "$cur"))
            return 0
        fi
    fi
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W '{names}' -- "$cur"))
        return 0
    fi
    if [[ -n $subs && -z $sub ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
        return 0
    fi
    local kinds=($args)
    if (( n < ${{#kinds[@]}} )); then kind=${{kinds[n]}}; else kind=$rest; fi
    [[ -n $kind ]] && {fn}_add "$kind"
    return 0
}}

complete -F {fn} {spec.prog}
"""
    return "\n".join(head) + "\n" + body
