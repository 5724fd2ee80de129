"""`mux gc`: old recovery refs dropped, the only way they go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from muxagent.commands.context import Context
from muxagent.errors import UsageError
from muxagent.git import recovery_refs

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# `mux gc --older-than` at most: a century, far older than any recovery ref, and a date that always exists.
MAX_GC_DAYS = 36525


def gc(ctx: Context, older_than_days: float, dry_run: bool = False) -> list[str]:
    """Drop recovery refs older than the given age (by the UTC time in their name): the only way they go."""
    # nan passed `< 0` and then failed in timedelta, inf and 1e10 overflowed it: all tracebacks.
    if not 0 <= older_than_days <= MAX_GC_DAYS:
        raise UsageError(f"--older-than must be a number of days from 0 to {MAX_GC_DAYS}")
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    dropped = []
    saved = [(ref, commit, ref.rsplit("/", 1)[-1]) for ref, commit in recovery_refs.list_recovery_refs(ctx.repo)]
    # Saved submodule states go with the recovery ref of the same stamp.
    saved += [(sub.ref, sub.commit, sub.stamp) for sub in recovery_refs.list_submodule_refs(ctx.repo)]
    for ref, commit, name in saved:
        stamp = name.split("-", 1)[0]
        try:
            when = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            continue  # not a name mux wrote: not mux's to drop
        if when >= cutoff:
            continue
        if not dry_run:
            recovery_refs.delete_recovery_ref(ctx.repo, ref, commit)
            ctx.store.journal("gc", ref=ref, commit=commit)
        dropped.append(ref)
    return dropped
