"""What the monitor tells a parent task about its sub-tasks: an inbox entry each time one gets idle, waiting or
exited, and one short notice for its agent, typed once the parent is idle.

The monitor's memory of each sub-task's last state is on disk (state/inbox.py), so a monitor started after a crash,
or after the tmux server died with the first one, records what happened meanwhile and nothing twice. Git is read
only for a sub-task whose state changed: a quiet tick reads nothing, from git, tmux or the disk.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from muxagent import naming, render
from muxagent.commands.context import Context
from muxagent.errors import MuxError
from muxagent.git import repository
from muxagent.listing import iso_epoch
from muxagent.model import State, Task, TaskReport, utc_iso
from muxagent.state import inbox
from muxagent.state.inbox import Entry, EntryChanges, Recorded
from muxagent.status import changes

INBOX_STATES = frozenset({State.IDLE, State.WAITING, State.EXITED})
# The states a sub-task's memory follows. Not `missing` or `starting`: after the tmux server died, `mux restart`
# brings an idle child back idle, and that is no new signal for its parent.
_FOLLOWED = INBOX_STATES | {State.WORKING}
# A notice waits this long after the newest entry it tells of, just under a tick: it goes out in the tick after that
# entry, and a child recorded in that tick joins it (and puts it off a tick) rather than getting a notice of its own.
NOTICE_SETTLE = 0.4
# A reason quoted in a notice is cut here: the notice is a prompt, one short line.
_MAX_REASON = 80
# A notice at most: one with a sub-task's name at the length limit and a reason cut to _MAX_REASON fits.
_MAX_NOTICE = 400
_UNICODE_BREAKS = re.compile("[\u2028\u2029]")
# The key of `Family.failing` for the memory file: no task has a name starting with a dot (nor a `/`, as the keys
# of the notice cursors have).
_MEMORY = ".memory"


@dataclass(frozen=True)
class Notice:
    text: str
    upto: int  # the last inbox entry it covers


@dataclass
class Family:
    ctx: Context
    recorded: dict[str, Recorded]
    # Parent -> when (time.monotonic) the newest entry its agent has not been told of was added.
    due: dict[str, float]
    # Sub-tasks whose memory was checked against their parent's inbox in this monitor's life.
    checked: set[str] = field(default_factory=set)
    # What failed and was said, by what it was about: a read-only or full state dir filled the monitor's window with
    # the same line twice a second. Said again only once it changes, forgotten once it works.
    failing: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, ctx: Context) -> Family:
        root = ctx.store.root
        due = {parent: float("-inf") for parent in inbox.parents(root) if _has_untold(ctx, parent)}
        return cls(ctx, inbox.load_recorded(root), due)

    def observe(self, reports: Sequence[TaskReport]) -> None:
        """Record in their parents' inboxes the sub-tasks that got idle, waiting or exited since last seen."""
        moved = [item for item in reports if self._moved(item)]
        listed = {item.task.name for item in reports}
        gone = [name for name in self.recorded if name not in listed]
        if not moved and not gone:
            return
        for name in gone:
            del self.recorded[name]
        finished = [item.task for item in moved if item.status.state in INBOX_STATES]
        counts = self._changes(finished) if finished else {}
        for item in moved:
            name = item.task.name
            try:
                self._record(item, counts.get(name))
            except MuxError as exc:
                # Tried again next tick; the other children, and the queued prompts of this tick, go on.
                self._failed(name, f"could not record {name} in its parent's inbox: {exc} (trying again)")
            else:
                self.failing.pop(name, None)
        try:
            inbox.save_recorded(self.ctx.store.root, self.recorded)
        except MuxError as exc:
            # The entries are on disk, and a monitor started later rebuilds its memory from them (`_remembered`):
            # the tick goes on, window marks and queued prompts with it.
            self._failed(_MEMORY, f"could not save its memory of sub-tasks: {exc}")
        else:
            self.failing.pop(_MEMORY, None)

    def _failed(self, about: str, message: str) -> None:
        if self.failing.get(about) != message:
            self.failing[about] = message
            print(f"mux monitor: {render.clean_line(message)}", flush=True)

    def _moved(self, item: TaskReport) -> bool:
        if item.task.parent is None or item.status.state not in _FOLLOWED or not _is_name(item.task.parent):
            return False
        known = self._remembered(item.task)
        if known is None or known.state != item.status.state.value:
            return True
        # The same state as last tick, but a hook event since: a whole turn (prompt, work, Stop) fell between two
        # ticks, and the parent hears of it as of any other.
        return item.status.state in INBOX_STATES and _newer(item.hook_ts, known.hook_ts)

    def _remembered(self, task: Task) -> Recorded | None:
        assert task.parent is not None
        known = self.recorded.get(task.name)
        if known is not None and (known.parent, known.created) != (task.parent, task.created):
            known = None  # a task of the same name before this one, or a link changed by hand
        if task.name in self.checked:
            return known
        self.checked.add(task.name)
        # An entry written after the memory was (a monitor killed between the two) is what it last recorded.
        later = [
            entry
            for entry in inbox.entries(self.ctx.store.root, task.parent, since=known.entry if known else 0)
            if entry.child == task.name and entry.time >= task.created
        ]
        if later:
            # The entry's time, to the second, rounded up: no hook event it was written after counts as newer.
            seen = iso_epoch(later[-1].time)
            known = Recorded(
                task.parent, task.created, later[-1].state, later[-1].id, seen + 1 if seen is not None else None
            )
            self.recorded[task.name] = known
        return known

    def _changes(self, tasks: list[Task]) -> dict[str, EntryChanges]:
        try:
            tips = repository.ref_tips(self.ctx.repo)
            works = changes.read_many(self.ctx.repo, self.ctx.store.root, tasks, tips, prune=False)
        except MuxError:
            return {}  # the entry says the changes are unknown; the state is what must not be lost
        found = {name: (len(work.paths), work.changes) for name, work in works.items()}
        return {name: EntryChanges(n, ch.added_lines, ch.removed_lines, ch.ahead) for name, (n, ch) in found.items()}

    def _record(self, item: TaskReport, counts: EntryChanges | None) -> None:
        task, state = item.task, item.status.state
        assert task.parent is not None
        known = self._remembered(task)
        entry_id = known.entry if known is not None else 0
        if state in INBOX_STATES:
            entry = inbox.append(
                self.ctx.store.root,
                task.parent,
                time=utc_iso(time.time()),
                child=task.name,
                state=state.value,
                # An agent's screen or hook wrote it: no escape reaches `mux inbox` or the parent's agent.
                reason=render.clean_line(item.status.reason),
                exit_status=item.status.exit_status if state is State.EXITED else None,
                changes=counts,
            )
            entry_id = entry.id
            if state.value in task.notify:
                self.due[task.parent] = time.monotonic()
        self.recorded[task.name] = Recorded(task.parent, task.created, state.value, entry_id, item.hook_ts)

    def notice(self, parent: str, tasks: Mapping[str, Task]) -> Notice | None:
        """The notice for the parent's agent, if one is due and has settled; None otherwise."""
        due = self.due.get(parent)
        if due is None or time.monotonic() - due < NOTICE_SETTLE:
            return None
        pending = inbox.entries(self.ctx.store.root, parent, since=_told_upto(self.ctx, parent))
        latest: dict[str, Entry] = {}
        for entry in pending:
            latest.pop(entry.child, None)
            latest[entry.child] = entry  # several entries of one child: its newest, in the order of the newest
        told = [entry for entry in latest.values() if _wants(tasks.get(entry.child), parent, entry)]
        if not told:
            self.told(parent, pending[-1].id if pending else 0)
            return None
        return Notice(notice_text(told), pending[-1].id)

    def told(self, parent: str, upto: int) -> None:
        """The parent's agent has been told of its entries up to `upto` (or, after a failure, will be by the next)."""
        self.due.pop(parent, None)
        if not upto:
            return
        try:
            inbox.mark_noticed(self.ctx.store.root, parent, upto)
        except MuxError as exc:
            # The notice was typed: a cursor that cannot move (a read-only state dir) at worst tells these entries
            # again with the next one, rather than ending the tick before the other tasks' queued prompts.
            self._failed(f"{parent}/noticed", f"could not note that {parent} was told: {exc}")
        else:
            self.failing.pop(f"{parent}/noticed", None)


def _newer(seen: float | None, remembered: float | None) -> bool:
    # Unknown on either side (no hooks, or a memory from before they were kept) is no evidence of a turn.
    return seen is not None and remembered is not None and seen > remembered


def _is_name(parent: str) -> bool:
    # A parent no task can be named (a hand-edited registry) has no inbox: it is skipped, every tick, quietly.
    try:
        naming.validate_name(parent)
    except MuxError:
        return False
    return True


def _has_untold(ctx: Context, parent: str) -> bool:
    try:
        return bool(inbox.entries(ctx.store.root, parent, since=_told_upto(ctx, parent)))
    except MuxError:
        return False  # a file no mux wrote, or one it cannot read: `mux inbox NAME` says what is wrong


def _told_upto(ctx: Context, parent: str) -> int:
    # What `mux inbox` showed needs no notice either: the parent's agent (or its human) has read it.
    root = ctx.store.root
    return max(inbox.noticed_upto(root, parent), inbox.read_upto(root, parent))


def _wants(child: Task | None, parent: str, entry: Entry) -> bool:
    """Whether the sub-task (still there, still the parent's, the one the entry is about and not an earlier task of
    its name) asked for its parent's agent to hear of the entry's state."""
    return child is not None and child.parent == parent and entry.time >= child.created and entry.state in child.notify


def _what(entry: Entry) -> str:
    """`is idle`, `is exited (status 2)`, `is waiting (Apply the change? (y/n))`."""
    if entry.state == State.EXITED and entry.exit_status is not None:
        return f"is exited (status {entry.exit_status})"
    if entry.state == State.WAITING:
        reason = render.clean_line(entry.reason).strip()
        cut = reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"
        return f"is waiting ({cut})" if cut else "is waiting"
    return f"is {entry.state}"


def notice_text(entries: Sequence[Entry]) -> str:
    """One plain line for the parent's agent, at most _MAX_NOTICE characters: what its sub-tasks reached, and the
    commands that follow."""
    if len(entries) == 1:
        entry = entries[0]
        name = entry.child
        if entry.state == State.WAITING:
            then = f"See: mux peek {name}. Answer: mux send {name} TEXT"
        else:
            then = f"Review: mux diff {name}. Merge: mux merge {name}"
        line = f"[mux] sub-task {name} {_what(entry)}: {entry.changes_summary()}. {then}. All: mux inbox"
    else:
        line = _coalesced(entries)
    return _plain(line)


def _coalesced(entries: Sequence[Entry]) -> str:
    """`[mux] 3 sub-tasks: a is idle: ...; b ...`, with as many of them as fit (`and 9 more`): twelve sub-tasks with
    long names, waiting with long reasons, made a notice of 2,200 characters."""
    head, tail = f"[mux] {len(entries)} sub-tasks: ", ". Review: mux diff NAME. Merge: mux merge NAME. All: mux inbox"
    parts = [f"{e.child} {_what(e)}: {e.changes_summary()}" for e in entries]
    shown = len(parts)
    while shown > 1 and len(head + _listed(parts, shown) + tail) > _MAX_NOTICE:
        shown -= 1
    return head + _listed(parts, shown) + tail


def _listed(parts: Sequence[str], shown: int) -> str:
    more = len(parts) - shown
    return "; ".join([*parts[:shown], *([f"and {more} more"] if more else [])])


def _plain(line: str) -> str:
    """The notice as the parent's agent may take it: typed as a prompt, one line that submits once, at Enter.

    Names are task names and reasons were cleaned when recorded; an inbox edited by hand is cleaned here too, and
    what clean_line leaves is made plain: Unicode's own line breaks (an editor or a TUI may break the prompt there),
    a lone surrogate (not UTF-8: `mux send` refuses it, and the notice was then never told), and any length."""
    text = _UNICODE_BREAKS.sub(" ", render.clean_line(line)).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= _MAX_NOTICE else text[: _MAX_NOTICE - 1] + "…"
