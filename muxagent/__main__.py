"""Entry point of `mux` and `python -m muxagent`.

Hidden commands that run inside an agent's turn or on every TAB press are dispatched here, before the CLI
module (and typer) is imported: they must cost little more than starting Python.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] in (["_tasks"], ["_hosts"]):
        from muxagent.completion import fast

        fast.main_fast(sys.argv)
        return
    if sys.argv[1:2] == ["_hook"]:
        from muxagent.status import hooks

        sys.exit(hooks.main(sys.argv[2:]))
    from muxagent import fastpath

    if fastpath.main_fast(sys.argv):  # `ls` and `status-line` from the live view, while it can be trusted
        return
    from muxagent import cli

    cli.main()


if __name__ == "__main__":
    main()
