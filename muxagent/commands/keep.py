"""`mux keep NAME-2`: the winner of a group merged as `mux merge` merges it, then the other members removed, each
with a recovery ref first (`mux restore NAME-3` brings one back)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from muxagent import naming
from muxagent.commands import merge, remove
from muxagent.commands.compare import group_members
from muxagent.commands.context import Context, get_task
from muxagent.errors import MuxError, UsageError
from muxagent.model import Progress, no_progress


@dataclass(frozen=True)
class KeepResult:
    merged: merge.MergeResult
    removed: list[remove.Removal]
    kept: dict[str, str]  # the members not removed, and why (a sub-task of their own, say)


def keep(
    ctx: Context, name: str, strategy: merge.Strategy = merge.Strategy.MERGE, message: str | None = None,
    progress: Progress = no_progress,
) -> KeepResult:  # fmt: skip
    """Merge first: a refused merge (a conflict: exit 3) raises before any other member is touched."""
    winner = get_task(ctx, naming.validate_name(name))
    if winner.group is None:
        raise UsageError(f"{name!r} is no member of a group (`mux new NAME -n N`): merge it with `mux merge {name}`")
    others = [task for task in group_members(ctx, winner.group) if task.name != winner.name]
    merged = merge.merge(ctx, merge.MergeRequest(winner.name, strategy, message), progress)
    removed: list[remove.Removal] = []
    kept: dict[str, str] = {}
    for other in others:
        progress(f"saving a recovery ref of {other.name} and removing it")
        try:
            # Forced: a losing candidate's work exists nowhere else, and the recovery ref keeps it.
            removed.append(remove.remove(ctx, other.name, force=True))
        except MuxError as exc:
            kept[other.name] = str(exc)
    gone = {removal.task.name for removal in removed}
    merged = replace(merged, behind=[name for name in merged.behind if name not in gone])
    return KeepResult(merged, removed, kept)
