"""A Hypothesis state machine over the lifecycle: whatever happens, no work is ever lost.

Steps: new (in a repo that may be a sparse checkout), agent commits, agent edits (tracked, untracked, ignored
inside a tracked `build/`, outside the sparse cone, or named by bytes that are not UTF-8), an agent clones a
repository into its worktree and edits it, the user edits the main checkout, merge (all three strategies), rm,
rm --force, a turn's end (the monitor's checkpoint), `mux undo` to some turn, the tmux server killed, mux killed
mid-command, a restart. Invariant, checked with real
git after every step: every commit ever made is reachable from a branch or a recovery ref, and the latest version of
every file anyone wrote is still on disk where it was written or reachable from a ref.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import git, make_repo
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from merge_helpers import blob_id, reachable_blobs

from muxagent.commands import context, create, merge, recovery, remove, report, turns
from muxagent.errors import MuxError
from muxagent.git import repository, worktrees
from muxagent.model import State

NAMES = ("a", "b")
FILES = ("README.md", "f1.txt", "sub/f2.txt")
IGNORED = "build/signing.local"  # ignored (*.local) in a tracked folder named like a cache: work all the same
NOT_UTF8 = os.fsdecode(b"caf\xe9.txt")  # names are bytes: a Latin-1 name once bricked the journal and intents
OUTSIDE_CONE = "dir2/y.txt"  # tracked, outside the sparse cone when the repo is sparse: `git add -A` skipped it
CRASHES = (
    ("new", "new:after-worktree"),
    ("new", "new:after-window"),
    ("rm --force", "rm:after-window"),
    ("rm --force", "rm:after-worktree"),
    ("merge", "merge:after-commit"),
    ("merge", "merge:after-update"),
    ("merge", "rm:after-branch"),
)


class NeverLoseWork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mux-sm-"))
        self.socket = f"muxsm-{os.getpid()}-{next(_counter)}"
        os.environ["MUX_TMUX_SOCKET"] = self.socket
        self.repo = make_repo(self.tmp / "proj")
        self.counter = itertools.count()
        self.commits: set[str] = set()
        # (directory, path) -> the latest content written there: it must survive unless overwritten by the owner.
        self.latest: dict[tuple[str, str], str] = {}

    # -- helpers -------------------------------------------------------------------------------------------

    def ctx(self) -> context.Context:
        return recovery.open_and_recover(self.repo)

    def task_dir(self, name: str) -> Path | None:
        task = context.load_tasks(self.ctx())
        found = [t for t in task if t.name == name]
        path = Path(found[0].worktree) if found else None
        return path if path is not None and path.is_dir() else None

    def agent_dir(self, name: str) -> Path | None:
        """The worktree the task's agent works in: only once its window checked the files out and started it."""
        path = self.task_dir(name)
        return path if path is not None and not worktrees.checkout_pending(path) else None

    def content(self, who: str) -> str:
        return f"{who} version {next(self.counter)}\n"

    def write(self, directory: Path, path: str, text: str) -> None:
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.latest[(str(directory), path)] = text

    def teardown(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        # kill-server leaves the socket file behind.
        Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules ---------------------------------------------------------------------------------------------

    @initialize(sparse=st.booleans())
    def tracked_files(self, sparse: bool) -> None:
        for path in (*FILES[1:], "build/release.sh", OUTSIDE_CONE):
            self.write(self.repo, path, "base\n")
        self.write(self.repo, ".gitignore", "__pycache__/\n*.log\n*.local\n")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", "base files")
        if sparse:  # every worktree mux makes from here inherits the cone (git worktree add copies it)
            git(self.repo, "sparse-checkout", "set", "sub", "build")
        self.latest.clear()
        for name in NAMES:  # start with work in flight: most steps then act on a task
            self.new(name)

    @rule(name=st.sampled_from(NAMES))
    def new(self, name: str) -> None:
        try:
            create.new_task(self.ctx(), create.NewRequest(name=name, agent="fake"))
        except MuxError:  # exists already, or its worktree path is taken
            return
        # The window checks the files out, then starts the agent: let it, unless the window is gone meanwhile.
        deadline = time.monotonic() + 10
        while (path := self.task_dir(name)) is not None and worktrees.checkout_pending(path):
            if time.monotonic() > deadline or report.report(self.ctx(), name).status.state is not State.STARTING:
                return
            time.sleep(0.02)

    @rule(name=st.sampled_from(NAMES), path=st.sampled_from((*FILES, NOT_UTF8)))
    def agent_commits(self, name: str, path: str) -> None:
        worktree = self.agent_dir(name)
        if worktree is None or git(worktree, "symbolic-ref", "-q", "--short", "HEAD").strip() != f"mux/{name}":
            return
        if repository.in_progress(worktree) is not None:
            return
        self.write(worktree, path, self.content(f"{name} committed"))
        git(worktree, "add", "--", path)
        git(worktree, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", f"{name} edits {path}")
        self.commits.add(git(worktree, "rev-parse", "HEAD").strip())

    @rule(name=st.sampled_from(NAMES), path=st.sampled_from((*FILES, "new.txt", IGNORED, NOT_UTF8, OUTSIDE_CONE)))
    def agent_edits(self, name: str, path: str) -> None:
        worktree = self.agent_dir(name)
        if worktree is not None:
            self.write(worktree, path, self.content(f"{name} uncommitted"))

    @rule(name=st.sampled_from(NAMES))
    def agent_clones(self, name: str) -> None:
        """A repository of its own in the worktree (`git clone`): one commit, then an uncommitted edit."""
        worktree = self.agent_dir(name)
        if worktree is None:
            return
        nested = worktree / "vendored"
        if not (nested / ".git").exists():
            nested.mkdir(exist_ok=True)
            git(nested, "init", "-q")
            self.write(nested, "lib.txt", self.content(f"{name} cloned"))
            git(nested, "add", "lib.txt")
            git(nested, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "cloned")
        self.write(nested, "lib.txt", self.content(f"{name} edited the clone"))

    @rule(path=st.sampled_from((*FILES, "new.txt", "mine.txt", NOT_UTF8)))
    def user_edits_main(self, path: str) -> None:
        self.write(self.repo, path, self.content("user"))

    @rule(name=st.sampled_from(NAMES), strategy=st.sampled_from(list(merge.Strategy)), keep=st.booleans())
    def merge(self, name: str, strategy: merge.Strategy, keep: bool) -> None:
        before = self.task_dir(name)
        try:
            merge.merge(self.ctx(), merge.MergeRequest(name, strategy, keep=keep))
        except MuxError:
            return
        if before is not None and not keep:
            self._forget(before)

    @rule(name=st.sampled_from(NAMES), force=st.booleans())
    def rm(self, name: str, force: bool) -> None:
        before = self.task_dir(name)
        try:
            remove.remove(self.ctx(), name, force=force)
        except MuxError:
            return
        if before is not None:
            self._forget(before)

    @rule(name=st.sampled_from(NAMES))
    def turn_ends(self, name: str) -> None:
        """What the monitor does as a turn ends: a checkpoint of the worktree."""
        if self.agent_dir(name) is not None:
            turns.record_turn(self.ctx(), context.get_task(self.ctx(), name), [])

    @rule(name=st.sampled_from(NAMES), to=st.sampled_from((None, 1, 2, 3)))
    def undo(self, name: str, to: int | None) -> None:
        if self.agent_dir(name) is None:
            return
        try:
            turns.undo(self.ctx(), name, to=to)
        except MuxError:  # no such turn, nothing to go back to, the agent busy
            return

    @rule()
    def kill_tmux(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    @rule(name=st.sampled_from(NAMES), crash=st.sampled_from(CRASHES))
    def crash(self, name: str, crash: tuple[str, str]) -> None:
        command, step = crash
        before = self.task_dir(name)
        args = [*command.split(), name] + (["-a", "fake"] if command == "new" else [])
        env = {**os.environ, "MUX_CRASH_AT": step}
        subprocess.run([sys.executable, "-m", "muxagent", *args], cwd=self.repo, env=env, capture_output=True,
                       timeout=60)  # fmt: skip
        self.restart()
        if before is not None and self.task_dir(name) is None:
            self._forget(before)

    @rule()
    def restart(self) -> None:
        ctx = self.ctx()  # finishes or rolls back whatever a crash interrupted
        report.list_reports(ctx)

    def _forget(self, worktree: Path) -> None:
        """The worktree is gone: what was written there must now be reachable from a ref (checked below)."""
        for key in [k for k in self.latest if Path(k[0]).is_relative_to(worktree)]:
            self.latest[("gone", f"{key[0]}:{key[1]}")] = self.latest.pop(key)

    # -- the invariant -------------------------------------------------------------------------------------

    @invariant()
    def no_work_is_lost(self) -> None:
        all_commits = set(git(self.repo, "rev-list", "--all").split())
        assert self.commits <= all_commits, f"commits lost: {self.commits - all_commits}"
        blobs = reachable_blobs(self.repo)
        for (directory, path), text in self.latest.items():
            on_disk = Path(directory, path)
            if directory != "gone" and on_disk.is_file() and on_disk.read_text() == text:
                continue
            assert blob_id(text) in blobs, f"lost {path!r} = {text!r} from {directory}"
        assert git(self.repo, "stash", "list") == ""


_counter = itertools.count()


@pytest.mark.usefixtures("fake_profile")
def test_no_commit_or_file_version_is_ever_lost(tmux_socket: str) -> None:
    NeverLoseWork.TestCase.settings = settings(
        max_examples=int(os.environ.get("MUX_SM_EXAMPLES", "12")),
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    # Through a typed name: Hypothesis 6.155 dropped this function's annotations, and mypy --strict then refused
    # the call (no-untyped-call), where older releases were typed.
    run_machine: Callable[..., None] = run_state_machine_as_test
    run_machine(NeverLoseWork, settings=NeverLoseWork.TestCase.settings)
