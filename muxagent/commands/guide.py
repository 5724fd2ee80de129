"""`mux guide`: what an agent needs to know to delegate with mux, to paste into AGENTS.md, CLAUDE.md or a prompt."""

from __future__ import annotations

import re
from collections.abc import Collection

GUIDE = """\
## Delegating with mux

You run in a mux task: a git worktree and branch of your own, in a tmux window. To hand a piece of work to
another agent and keep going, start a sub-task: it gets its own worktree, starts from your branch and reports
back to you.

- Start: `mux new NAME -a AGENT -p "what to do, and how to tell it is done"` from your own shell (that makes
  it your sub-task). It starts from your last commit: commit first what it must see. `mux agents` lists agents.
- Wait for the first one done: `mux wait --any NAME... --for idle --timeout 1800` prints which (exit 4: timeout).
- Or be told: once your turn is over, a line such as "[mux] sub-task NAME is idle: +12 -3 in 2 files, 1 commit
  ahead" arrives as your next prompt.
- Read every report, also the ones you missed: `mux inbox`.
- See how they are: `mux ls` (working, waiting, idle, exited). One waiting asks something: `mux peek NAME`
  shows its screen, `mux send NAME "answer"` answers it.
- Review: `mux diff NAME` shows its changes against your branch, committed or not.
- Merge: `mux merge NAME` brings its work into your branch and removes the sub-task; it refuses, changing
  nothing, on a conflict (exit 3) or where your uncommitted edits are in the way.
- Drop it unmerged: `mux rm NAME` (refused while work would be lost; `--force` keeps it in a recovery ref).
"""

# A command is named in backquotes, `mux NAME ...`: plain words after "mux" are not commands.
_NAMED = re.compile(r"`mux ([a-z][a-z-]*)")


def named_commands(text: str) -> set[str]:
    return set(_NAMED.findall(text))


def guide(commands: Collection[str]) -> str:
    """The guide, less the items that name a command this mux does not have (the inbox comes with notices)."""
    items = re.split(r"\n(?=- |\Z)", GUIDE.rstrip("\n"))
    return "\n".join(item for item in items if named_commands(item) <= set(commands)) + "\n"
