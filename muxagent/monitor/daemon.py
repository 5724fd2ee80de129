"""The watcher that runs while tasks live, without the user starting anything.

`ensure_running` starts it in a window of its own tmux session (`<session>-monitor`), so it lives and dies
with the tmux server that runs the agents; a file lock makes sure one monitor per repository runs. Each tick it
takes one batched snapshot of every task, and on a change of state it updates the window name's mark, rings
the bell and sends a desktop notification when a task starts waiting or goes idle, and delivers prompts queued
with `mux send --when-idle`; a sub-task that gets idle, waiting or exited goes into its parent's inbox, and the
parent's agent is told once it is idle (family.py). It exits when the repository has no tasks left.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from muxagent import config, naming, render
from muxagent.commands import context, create, interact, recovery, report
from muxagent.errors import MuxError, StoreError, UnknownTaskError
from muxagent.model import State, Task, TaskReport
from muxagent.monitor.family import Family
from muxagent.monitor.hostwatch import HostWatch
from muxagent.monitor.keeper import ViewKeeper
from muxagent.monitor.turns import TurnRecorder
from muxagent.monitor.watch import ChangeWatcher, in_git_dir
from muxagent.state import files, monitor_state, prompt_queue, view
from muxagent.state.monitor_state import MonitorState
from muxagent.status import adapters, events, patterns
from muxagent.tmux.client import ScreenCache, Tmux

TICK = 0.5
# A hook event wakes the monitor before its tick is due (issue 14: hook event -> `ls` shows it under 0.5 s at 100
# tasks, where waiting for the next tick and then for the view gave 624 ms); ticks stay this far apart at least,
# so an agent whose hooks fire back to back cannot spin the monitor.
MIN_GAP = 0.05
WINDOW_NAME = "monitor"
# The monitor runs in a session of its own: the repository's session name and this.
SESSION_SUFFIX = "-monitor"
ALERT_STATES = frozenset({State.WAITING, State.IDLE})
DELIVERY_GAP = 3.0
# A TUI can drop the key that answers its dialog (seen with Codex 0.169's approval): a trust dialog still on
# screen this long after mux answered it is answered again, a few times at most.
TRUST_RETRY_AFTER = 5.0
TRUST_ANSWERS = 3


def window_title(name: str, state: State) -> str:
    return f"{name} {render.STATE_MARKS[state]}"


@contextlib.contextmanager
def _sole_monitor(state_dir: Path) -> Iterator[bool]:
    """Whether this process is the repository's one monitor, which it stays until the block ends."""
    with contextlib.ExitStack() as lock:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            lock.enter_context(files.locked(state_dir / monitor_state.LOCK_FILE, wait=False))
            sole = True
        except BlockingIOError:
            sole = False  # another monitor holds it
        except OSError as exc:
            raise StoreError(f"cannot open {state_dir / monitor_state.LOCK_FILE}: {exc.strerror}") from exc
        yield sole


def is_running(ctx: context.Context) -> bool:
    with _sole_monitor(ctx.store.root) as sole:
        return not sole


def ensure_running(ctx: context.Context) -> None:
    """Start the monitor unless one is already watching this repository."""
    if is_running(ctx):
        return
    session = naming.session_for(ctx.repo.main) + SESSION_SUFFIX
    argv = [sys.executable, "-P", "-m", "muxagent", "_monitor"]
    env = {"MUX_TMUX_SOCKET": ctx.tmux.socket} if ctx.tmux.socket else {}
    ctx.tmux.new_window(session, WINDOW_NAME, ctx.repo.main, argv, env, task="")


def revive(ctx: context.Context) -> None:
    """Start the monitor again where tasks run without one (it was killed, or crashed): what reads the monitor's
    work (`ls`, `inbox`) brings it back, rather than the next `new` or `restart`, so no sub-task's signal waits on a
    user's guess. Not for a repository without tasks, nor without a tmux server: that would start a server."""
    try:
        if is_running(ctx) or len(ctx.store.load()) == 0 or not ctx.tmux.server_running():
            return
        ensure_running(ctx)
    except MuxError:
        return  # a read-only state dir (its lock cannot be opened), tmux refusing: `ls` still answers, as before


@dataclass
class _Seen:
    state: State | None = None
    delivered_at: float = 0.0
    trust_answers: int = 0
    trust_answered_at: float = float("-inf")


# The marks agents put before the focused entry of a menu (Claude ❯, Codex ›).
_FOCUS_MARKS = ("❯", "›", ">")


def choose_menu_entry(tmux: Tmux, target: str, choice: str, attempts: int = 6) -> bool:
    """Move the focus of the menu on screen to the entry matching `choice` and press Enter.

    Which entry has the focus first differs between agent versions, so the screen is read after every move.
    """
    for _ in range(attempts):
        screen = tmux.capture([target]).get(target, "")
        focused = [line for line in screen.splitlines() if line.lstrip().startswith(_FOCUS_MARKS)]
        if any(patterns.first_match((choice,), line) for line in focused):
            tmux.send_keys(target, "Enter")
            return True
        tmux.send_keys(target, "Down")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and tmux.capture([target]).get(target, "") == screen:
            time.sleep(0.05)
    return False


@dataclass
class Monitor:
    ctx: context.Context
    watcher: ChangeWatcher | None = None
    seen: dict[str, _Seen] = field(default_factory=dict)
    notify_send: str | None = field(default_factory=lambda: shutil.which("notify-send"))
    polling: dict[str, str] = field(default_factory=dict)
    last_change: dict[str, float] = field(default_factory=dict)
    written: MonitorState | None = None
    screens: ScreenCache = field(default_factory=ScreenCache)
    hook_events: events.EventsCache = field(default_factory=events.EventsCache)
    family: Family = field(init=False)
    keeper: ViewKeeper = field(init=False)
    turns: TurnRecorder = field(init=False)
    hosts: HostWatch = field(init=False)

    def __post_init__(self) -> None:
        self.family = Family.load(self.ctx)
        self.hosts = HostWatch(self.ctx)
        self.keeper = ViewKeeper(self.ctx)
        self.turns = TurnRecorder(self.ctx)

    def tick(self) -> int:
        """One look at every task; returns how many tasks there are."""
        looked_at = time.time()
        epoch = view.epoch(self.ctx.store.root)  # before looking: a command that ends while it looks renews it
        every = context.load_tasks(self.ctx)
        tasks = [task for task in every if task.host is None]
        reports, present = report.statuses(self.ctx, tasks, self.screens, self.hook_events) if tasks else ([], [])
        # A task on another host is asked by a thread of its host's (hostwatch.py): only its current rows are shown.
        remote = self.hosts.look([task for task in every if task.host is not None], epoch, looked_at)
        touched = self._watch_worktrees(self.watcher, present) if self.watcher is not None else set()
        order = {task.name: index for index, task in enumerate(every)}
        shown = sorted([*reports, *remote], key=lambda item: order[item.task.name])
        # Before anything is typed (a delivery waits for the agent to take it): the view stays fresh meanwhile.
        self.keeper.publish(shown, present, touched | set(self.polling), self.last_change, looked_at, epoch)
        # Before anything is typed: a parent told of its children in this tick hears of all of them at once.
        self.family.observe(reports)
        self.turns.observe(reports, self.hook_events)  # before a queued prompt starts the next turn
        by_name = {item.task.name: item.task for item in shown}
        queued = frozenset(prompt_queue.queued_tasks(self.ctx.store.root))  # one listdir, not a read per idle task
        for item in reports:
            seen = self.seen.setdefault(item.task.name, _Seen())
            if item.status.state is not seen.state:
                self._transition(item, seen.state)
                seen.state = item.status.state
            self._type_into(item, seen, by_name, queued)
            self._auto_trust(item, seen)
        for item in remote:  # its window is on its host's tmux server, not here: no mark in its name
            seen = self.seen.setdefault(item.task.name, _Seen())
            if item.status.state is not seen.state:
                if seen.state is not None and item.status.state in ALERT_STATES:
                    self._alert(item)
                seen.state = item.status.state
            self._type_into(item, seen, by_name, queued)  # `send --when-idle`: typed over its host's connection
        for gone in set(self.seen) - set(order):
            del self.seen[gone]
        for name in create.start_queued(self.ctx, reports):  # `mux new -n N --max-running K`'s next members
            print(f"mux monitor: started queued {name}", flush=True)
        return len(every)

    def _watch_worktrees(self, watcher: ChangeWatcher, present: list[Task]) -> set[str]:
        """Follow the worktrees of the tasks in `present` (there and checked out: the checkout is not a change the
        agent made); one that cannot be watched is left to `git status` polling. Returns the tasks whose files
        changed since the last tick."""
        wanted = {task.name: task.worktree for task in present}
        for name in watcher.keys - set(wanted):
            watcher.unwatch(name)
        for name in set(wanted) - watcher.keys - set(self.polling):
            failure = watcher.watch(name, Path(wanted[name]))
            if failure is not None:
                self.polling[name] = failure
        for name in set(self.polling) - set(wanted):
            del self.polling[name]
        now = time.time()
        changed = watcher.take_changed()
        for name in changed:
            self.last_change[name] = now
        self._write_status(sorted(watcher.keys))
        return changed

    def _write_status(self, watching: list[str]) -> None:
        state = MonitorState(os.getpid(), watching, dict(self.polling), dict(self.last_change))
        if state != self.written:
            monitor_state.write(self.ctx.store.root, state)
            self.written = state

    def _transition(self, item: TaskReport, before: State | None) -> None:
        task, state = item.task, item.status.state
        if task.window and state is not State.MISSING:
            # The window may have gone away between the snapshot and now.
            with contextlib.suppress(MuxError):
                self.ctx.tmux.rename_window(task.window, window_title(task.name, state))
        if before is not None and state in ALERT_STATES:
            self._alert(item)

    def _alert(self, item: TaskReport) -> None:
        task, state = item.task, item.status.state
        # The bell rings in the monitor's own window: a bell written into the agent's pane would count as the
        # agent's output and turn a quiet task back to `working`.
        sys.stdout.write("\a")
        sys.stdout.flush()
        if self.notify_send:
            words = "needs you" if state is State.WAITING else "is done"
            try:
                subprocess.run(
                    # The body takes markup (notification spec): a reason quoting a repo's pattern stays plain text.
                    [self.notify_send, f"mux: {task.name} {words}", html.escape(render.clean_line(item.status.reason))],
                    capture_output=True, check=False, timeout=5,
                )  # fmt: skip
            except (OSError, subprocess.SubprocessError) as exc:
                # A broken or hanging notify-send (a bad interpreter line, no session bus) once ended the monitor's
                # tick before it delivered queued prompts; without a desktop the bell is enough.
                print(f"mux monitor: notifications off: {self.notify_send} failed: {exc}", flush=True)
                self.notify_send = None

    def _auto_trust(self, item: TaskReport, seen: _Seen) -> None:
        if item.status.state is not State.WAITING or not item.status.reason.startswith("trust dialog"):
            return
        if seen.trust_answers >= TRUST_ANSWERS or time.monotonic() - seen.trust_answered_at < TRUST_RETRY_AFTER:
            return
        try:
            profile = config.resolve_agent(item.task.agent, context.settings_or_none(self.ctx))
        except MuxError:
            return
        if not (profile.auto_trust and profile.trust_choice):
            return
        if not adapters.main_repo_trusted(profile.hooks, self.ctx.repo.main, {**os.environ, **profile.env}):
            return
        seen.trust_answers += 1
        seen.trust_answered_at = time.monotonic()
        self.ctx.store.journal("auto-trust", name=item.task.name, reason=item.status.reason)
        choose_menu_entry(self.ctx.tmux, item.task.window, profile.trust_choice)

    def _type_into(self, item: TaskReport, seen: _Seen, tasks: dict[str, Task], queued: frozenset[str]) -> None:
        """Into an idle agent: the next queued prompt (`queued`: the tasks with a queue file), else the notice of
        its sub-tasks; one of them a turn."""
        if item.status.state is not State.IDLE:
            return
        # Right after a delivery the agent may still look idle: wait until it has shown output since (activity
        # has one-second resolution) or long enough that a quiet turn has surely been taken.
        last = item.status.last_activity or 0.0
        since = time.time() - seen.delivered_at
        if seen.delivered_at and last <= seen.delivered_at + 1 and since < DELIVERY_GAP:
            return
        if self.turns.pending(item.task.name):  # the turn that just ended is recorded before the next one starts
            return
        if (item.task.name in queued and self._deliver(item)) or self._notify_parent(item, tasks):
            seen.delivered_at = time.time()

    def _deliver(self, item: TaskReport) -> bool:
        if not prompt_queue.pending(self.ctx.store.root, item.task.name):
            return False
        text = prompt_queue.pop(self.ctx.store.root, item.task.name)
        if text is None:
            return False
        self.ctx.store.journal("deliver", name=item.task.name, chars=len(text))
        try:
            interact.send(self.ctx, item.task.name, text)
        except UnknownTaskError:
            return False
        except MuxError as exc:
            # Off the queue but not delivered (a queue file edited by hand, tmux refusing it): the journal keeps
            # the whole text, and this window says so, rather than the monitor dying with the prompt dropped.
            self.ctx.store.journal("undelivered", name=item.task.name, text=text, error=str(exc))
            print(f"mux monitor: could not deliver a queued prompt to {item.task.name}: {exc} (kept in the journal)")
            return False
        return True

    def _notify_parent(self, item: TaskReport, tasks: dict[str, Task]) -> bool:
        name = item.task.name
        notice = self.family.notice(name, tasks)
        if notice is None:
            return False
        try:
            interact.send(self.ctx, name, notice.text)
        except MuxError as exc:
            # Its entries stay in the inbox, untold: the parent hears of them with the next entry that comes.
            print(f"mux monitor: could not tell {name} of its sub-tasks: {render.clean_line(str(exc))}", flush=True)
            self.family.told(name, 0)
            return False
        self.ctx.store.journal("notice", name=name, upto=notice.upto, chars=len(notice.text))
        self.family.told(name, notice.upto)
        return True


def run(cwd: Path) -> int:
    """The monitor process: returns when the repository has no tasks left (or another monitor runs)."""
    ctx = recovery.open_and_recover(cwd)
    with _sole_monitor(ctx.store.root) as sole:
        if sole:
            try:
                with ChangeWatcher(ignore=in_git_dir) as watcher, ChangeWatcher() as hooks:
                    _watch_hook_events(ctx, hooks)
                    _loop(Monitor(ctx, watcher=watcher), hooks)
            finally:
                # Under the lock: a monitor started next must not see its own status cleared by this one.
                monitor_state.clear(ctx.store.root)
                view.remove(ctx.store.root)
    _close_own_window(ctx)
    return 0


def _watch_hook_events(ctx: context.Context, hooks: ChangeWatcher) -> None:
    """Wake on every hook event: the hook command appends to a file in the events folder. A folder that cannot be
    watched leaves hook events to the next tick, as before."""
    folder = events.events_dir(ctx.store.root)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    failure = hooks.watch("events", folder)
    if failure is not None:
        print(f"mux monitor: hook events wait for the next tick: {render.clean_line(failure)}", flush=True)


def _pause(hooks: ChangeWatcher | None, started: float) -> None:
    """Until the next tick is due, or a hook event came (but not before MIN_GAP after this tick began)."""
    if hooks is None:
        time.sleep(max(0.0, TICK - (time.monotonic() - started)))
        return
    time.sleep(max(0.0, MIN_GAP - (time.monotonic() - started)))
    hooks.wait(max(0.0, TICK - (time.monotonic() - started)))


def _loop(monitor: Monitor, hooks: ChangeWatcher | None = None) -> None:
    empty_ticks = 0
    while empty_ticks < 4:
        started = time.monotonic()
        try:
            count = monitor.tick()
        except MuxError as exc:
            print(f"mux monitor: {render.clean_line(str(exc))}", flush=True)  # its window is a terminal too
            count = 1
        except Exception as exc:
            # The monitor is what delivers queued prompts and marks windows: one bad tick must not end it.
            print(f"mux monitor: internal error: {type(exc).__name__}: {exc}", flush=True)
            count = 1
        empty_ticks = 0 if count else empty_ticks + 1
        _pause(hooks, started)


def _close_own_window(ctx: context.Context) -> None:
    pane = os.environ.get("TMUX_PANE")
    if pane:
        with contextlib.suppress(MuxError):
            ctx.tmux.kill_window(pane)
