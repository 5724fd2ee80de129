"""`mux agents`: the agent profiles and whether each one's command is installed."""

from __future__ import annotations

from muxagent import config
from muxagent.commands.context import Context, settings_or_none
from muxagent.model import AgentProfile


def agents(ctx: Context | None) -> list[tuple[AgentProfile, str | None]]:
    settings = settings_or_none(ctx) if ctx is not None else None
    return [(profile, config.command_available(profile)) for profile in config.list_profiles(settings)]
