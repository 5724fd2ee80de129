"""Which conversation `mux restart` resumes: the session id the agent's hooks recorded (status/events.py,
`sessions`), once the agent's own records show that the session was held in this task's worktree.

Each agent resumes a session by id whatever directory it belongs to, or refuses in its own words: a session
of another worktree would put this task's agent into another task's conversation. Read only, never written.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from muxagent.status.events import SESSION_ID


@dataclass(frozen=True)
class Resume:
    """What to append to the agent's command: `args`, and `note`, the one line saying why when it is not the
    recorded session."""

    args: tuple[str, ...]
    session: str = ""
    note: str = ""


def resume(kind: str, recorded: list[str], worktree: Path, env: Mapping[str, str], fallback: tuple[str, ...]) -> Resume:
    """Resume the newest recorded session the agent keeps, if held in `worktree`; else `fallback` (the profile's
    `resume_args`, which resume the latest conversation of the directory)."""
    if not recorded and kind not in _READERS:
        return Resume(fallback)  # an agent mux records no session of: its resume_args are the plan, not a fallback
    why = "no session recorded"
    for session in filter(SESSION_ID.match, recorded):
        where = _session_cwd(kind, session, env)
        if where is None:
            # Not kept (Codex's thread that titles the session reports a turn of its own): an older one may be.
            why = f"session {session} is not on disk"
            continue
        if _same_dir(where, worktree):
            return Resume(_args(kind, session), session)
        # The agent was last in another worktree's conversation (Claude's /resume lists every project's): the
        # task's own conversation is the one its directory's latest is.
        why = f"session {session} is of {where}"
        break
    return Resume(fallback, note=f"{why}: resuming with `{' '.join(fallback) or 'no resume arguments'}` instead")


def side_thread(kind: str, session: str, env: Mapping[str, str]) -> bool:
    """Whether a session a hook named is a side thread of the agent, not the task's conversation: Codex's thread
    that titles the session notifies a turn of its own (its prompt the title request, its message the title) and,
    alone of a run's threads, has no rollout file (Codex 0.169). Its event in a checkpoint put the title there."""
    return kind == "codex" and bool(session) and _session_cwd(kind, session, env) is None


def _args(kind: str, session: str) -> tuple[str, ...]:
    return {"claude": ("--resume", session), "codex": ("resume", session), "opencode": ("--session", session)}[kind]


def _same_dir(recorded: str, worktree: Path) -> bool:
    return os.path.realpath(recorded) == os.path.realpath(worktree)


def _session_cwd(kind: str, session: str, env: Mapping[str, str]) -> str | None:
    """The directory the agent's own records say the session was held in; None when they do not say."""
    reader = _READERS.get(kind)
    try:
        return reader(session, env) if reader is not None else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home()))


def _claude_cwd(session: str, env: Mapping[str, str]) -> str | None:
    # `<config dir>/projects/<the cwd, every character but letters and digits turned into '-'>/<id>.jsonl`, each
    # line a record with the `cwd` it was made in (Claude Code 2.1.330). The folder's name is not trusted: two
    # paths can map to one name, and long ones are shortened.
    config_dir = Path(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else _home(env) / ".claude"
    for transcript in (config_dir / "projects").glob(f"*/{session}.jsonl"):
        with transcript.open(encoding="utf-8") as lines:
            for line in lines:
                cwd = json.loads(line).get("cwd")
                if isinstance(cwd, str):
                    return cwd
    return None


def _codex_cwd(session: str, env: Mapping[str, str]) -> str | None:
    # `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`, its first line `session_meta` with the `cwd`
    # (Codex 0.169).
    codex_home = Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else _home(env) / ".codex"
    for rollout in (codex_home / "sessions").glob(f"*/*/*/rollout-*-{session}.jsonl"):
        with rollout.open(encoding="utf-8") as lines:
            cwd = json.loads(lines.readline()).get("payload", {}).get("cwd")
        if isinstance(cwd, str):
            return cwd
    return None


def _opencode_cwd(session: str, env: Mapping[str, str]) -> str | None:
    # `$XDG_DATA_HOME/opencode/opencode.db`, table `session` (`id`, `directory`, `parent_id`), OpenCode 1.18. A
    # sub-agent's session (one with a parent) reports events too: it is not the conversation to resume.
    import sqlite3  # only `mux restart` of an OpenCode task reads it

    data_home = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else _home(env) / ".local" / "share"
    database = data_home / "opencode" / "opencode.db"
    if not database.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            found = db.execute("SELECT directory, parent_id FROM session WHERE id = ?", (session,)).fetchone()
    except sqlite3.Error:
        return None
    return str(found[0]) if found is not None and found[1] is None else None


_READERS = {"claude": _claude_cwd, "codex": _codex_cwd, "opencode": _opencode_cwd}
