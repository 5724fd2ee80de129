"""`mux agents`: the agent profiles and whether each one's command is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from muxagent import config
from muxagent.commands.context import Context, settings_or_none
from muxagent.model import AgentProfile


@dataclass(frozen=True)
class AgentList:
    """What `mux agents` prints: each profile and the path of its command, None when it is not installed."""

    rows: tuple[tuple[AgentProfile, str | None], ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "command": list(p.command), "path": path} for p, path in self.rows]

    def lines(self) -> list[str]:
        return [f"{p.name:<10} {' '.join(p.command):<24} {path or 'not installed'}" for p, path in self.rows]


def agents(ctx: Context | None) -> AgentList:
    settings = settings_or_none(ctx) if ctx is not None else None
    return AgentList(tuple((profile, config.command_available(profile)) for profile in config.list_profiles(settings)))
