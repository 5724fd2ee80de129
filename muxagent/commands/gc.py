"""`mux gc`: old recovery refs and the old checkpoints of removed tasks dropped, the only way they go, and with them
the inboxes of tasks gone for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from muxagent.commands.context import Context, load_tasks
from muxagent.errors import StoreError, UsageError
from muxagent.git import checkpoints, recovery_refs
from muxagent.state import inbox, intents

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# `mux gc --older-than` at most: a century, far older than any recovery ref, and a date that always exists.
MAX_GC_DAYS = 36525


def gc(ctx: Context, older_than_days: float, dry_run: bool = False) -> list[str]:
    """Drop recovery refs older than the given age (by the UTC time in their name): the only way they go. Then the
    inboxes of tasks gone for good (see `_inboxes_to_keep`). Returns what went: refs, and `the inbox of NAME`."""
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
    dropped += _drop_checkpoints(ctx, cutoff.timestamp(), dry_run)
    try:
        forgotten = inbox.forget(ctx.store.root, _inboxes_to_keep(ctx, set(dropped)), dry_run=dry_run)
    except StoreError as exc:
        # A read-only state dir: the refs went (git's own files), the inboxes wait for the next gc.
        ctx.notes.append(f"{exc}: no inbox was dropped")
        forgotten = []
    for name in [] if dry_run else forgotten:
        ctx.store.journal("gc-inbox", name=name)
    return dropped + [f"the inbox of {name}" for name in forgotten]


def _drop_checkpoints(ctx: Context, cutoff: float, dry_run: bool) -> list[str]:
    """The checkpoints older than `cutoff` of names no task has (nor a command in progress is about): `mux rm`
    keeps a task's turns for `mux log` and `mux restore`, this is where they go."""
    live = {task.name for task in load_tasks(ctx)} | intents.names(ctx.store.root)
    dropped = []
    for name, found in checkpoints.names_with_checkpoints(ctx.repo).items():
        for checkpoint in found if name not in live else []:
            if checkpoint.at >= cutoff:
                continue
            if not dry_run:
                checkpoints.delete_checkpoint(ctx.repo, checkpoint)
                ctx.store.journal("gc", ref=checkpoint.ref, commit=checkpoint.commit)
            dropped.append(checkpoint.ref)
    return dropped


def _inboxes_to_keep(ctx: Context, dropped: set[str]) -> set[str]:
    """The names whose inbox stays: a task's; the parent a task still names (a restored sub-task reports to it
    before it is back); one a command in progress is about (a `mux restore`); and one a recovery ref that stays
    can bring back, so that `mux restore PARENT` finds what its sub-tasks reported. An inbox goes with the last way
    to restore its task: kept, an inbox of a name no task will have again grew forever; dropped at `mux rm`, a
    restored parent had lost its sub-tasks' history."""
    tasks = load_tasks(ctx)
    named = {task.name for task in tasks} | {task.parent for task in tasks if task.parent}
    restorable = {ref.split("/")[3] for ref, _ in recovery_refs.list_recovery_refs(ctx.repo) if ref not in dropped}
    return named | restorable | intents.names(ctx.store.root)
