"""Tasks on another host: the repository mux keeps there, the task's worktree, branch and window on it, and
bringing its work home, every step over the host's one SSH connection (muxagent/ssh/runner.py).

On the host, under its `path` (`mux host add --path`, default ~/.cache/mux/repos), each local repository has a
folder named like its tmux session: `repo.git` (bare; the base commits are pushed into it as
`refs/mux/base/NAME`) and `worktrees/NAME`. Its tmux server has its own socket, `mux` (REMOTE_SOCKET).

Nothing the user typed reaches a remote shell as code: every remote command is an argument list (the scripts
below are fixed text, their data passed as positional arguments), quoted by the ssh runner's one function.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from muxagent import config, hosts, naming
from muxagent.commands.context import REMOTE_SOCKET, Context, now_iso
from muxagent.errors import HostUnreachableError, MuxError, TaskExistsError, UsageError, WouldLoseWorkError
from muxagent.git import recovery_refs, repository
from muxagent.git.runner import run_git
from muxagent.hosts import Host
from muxagent.model import AgentProfile, Changes, State, Task, TaskReport, TaskStatus
from muxagent.ssh import runner as ssh
from muxagent.state.store import Registry, task_to_dict
from muxagent.status import classifier
from muxagent.tmux.client import SNAPSHOT_FORMAT, capture_args, parse_snapshot, split_sections
from muxagent.tmux.runner import is_no_server, tmux_argv

BASE_PREFIX = "refs/mux/base/"
# Where a merge puts the commit holding the task's uncommitted work, on the host, while it is brought home.
MERGING_PREFIX = "refs/mux/merging/"
PORT_FIRST, PORT_BLOCK, PORT_BLOCKS = 20000, 10, 4000

# Makes (once) and prints the repository's folder on the host: $1 the host's path (a leading ~ is its HOME),
# $2 the folder's name.
_PREPARE = """set -e
case $1 in "~") top=$HOME ;; "~/"*) top=$HOME/${1#"~/"} ;; *) top=$1 ;; esac
mkdir -p "$top/$2/worktrees"
cd "$top/$2"
test -d repo.git || git init -q --bare repo.git
pwd -P"""

# The worktree's state as one commit on top of its branch, nothing in it touched (a scratch index): prints the
# commit, or the tip when nothing is uncommitted. $1 the worktree, $2 the message, $3 the branch.
_SNAPSHOT = """set -e
cd "$1"
tip=$(git rev-parse --verify -q "refs/heads/$3^{commit}" || true)
head=$(git rev-parse --verify -q HEAD || true)
index=$(git rev-parse --git-path index)
scratch=$(mktemp)
trap 'rm -f "$scratch"' EXIT
if [ -f "$index" ]; then cp "$index" "$scratch"; else rm -f "$scratch"; fi
GIT_INDEX_FILE=$scratch git add -A
tree=$(GIT_INDEX_FILE=$scratch git write-tree)
if [ -n "$head" ] && [ "$tree" = "$(git rev-parse "$head^{tree}")" ] && [ "$head" = "$tip" ]; then
  printf '%s' "$tip"; exit 0
fi
set -- "$2" "$tip" "$head"
parents=""
[ -n "$2" ] && parents="-p $2"
[ -n "$3" ] && [ "$3" != "$2" ] && parents="$parents -p $3"
GIT_AUTHOR_NAME=mux GIT_AUTHOR_EMAIL=mux@localhost GIT_COMMITTER_NAME=mux GIT_COMMITTER_EMAIL=mux@localhost \\
  git commit-tree $parents -m "$1" "$tree\""""

# The worktree's changes against its base, uncommitted and untracked files included: $1 worktree, $2 base ref,
# $3 "--stat" or "--patch".
_DIFF = """set -e
cd "$1"
index=$(git rev-parse --git-path index)
scratch=$(mktemp)
trap 'rm -f "$scratch"' EXIT
cp "$index" "$scratch"
GIT_INDEX_FILE=$scratch git add -A
GIT_INDEX_FILE=$scratch git diff --cached "$3" "$2\""""


@dataclass(frozen=True)
class Place:
    """The repository's folder on a host."""

    host: Host
    root: str  # absolute, on the host

    @property
    def repo(self) -> str:
        return f"{self.root}/repo.git"

    def worktree(self, name: str) -> str:
        return f"{self.root}/worktrees/{name}"


def target_of(name: str) -> ssh.SshTarget:
    return hosts.get_host(name).target


def repo_of(task: Task) -> str:
    """The task's repository on its host: its worktree is `<root>/worktrees/NAME` (Place)."""
    return task.worktree.rsplit("/", 2)[0] + "/repo.git"


def _git_ssh(target: ssh.SshTarget) -> dict[str, str]:
    """The environment that sends a local git's push or fetch through the host's shared connection."""
    return {"GIT_SSH_COMMAND": shlex.join(["ssh", *ssh.ssh_options(target)])}


def _url(target: ssh.SshTarget, path: str) -> str:
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    return f"{host}:{path}"


def _check(result: ssh.Result, host: str, what: str) -> str:
    if result.status != 0:
        raise MuxError(f"on host {host}: {what} failed: {ssh.first_line(result.stderr or result.stdout)}")
    return result.stdout


# -- creating --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteRequest:
    name: str
    host: str
    agent: str | None
    prompt: str | None
    base: str | None


def create(ctx: Context, request: RemoteRequest, progress: Callable[[str], None]) -> Task:
    """`mux new NAME --host HOST`: push the base commit into the host's repository, make the branch and worktree
    there and start the agent in a window of the host's tmux server. A failure takes back what it made."""
    name = naming.validate_name(request.name)
    if request.prompt is not None:
        naming.validate_prompt(request.prompt)
    host = hosts.get_host(request.host)
    target = host.target
    profile = config.resolve_agent(request.agent or ctx.settings.agent, ctx.settings)
    base = request.base or ctx.settings.base or repository.current_branch(ctx.repo.main)
    if base is None:
        raise UsageError("the main checkout is on a detached HEAD: pass --base REF")
    commit = repository.resolve_commit(ctx.repo, base)
    branch = naming.branch_for(name)
    with ctx.store.transaction() as registry:
        if name in registry:
            raise TaskExistsError(f"task {name!r} exists (see `mux ls`)")
        if repository.branch_exists(ctx.repo, branch):
            raise TaskExistsError(f"branch '{branch}' exists here: its task would be brought home over it")
        progress(f"connecting to {host.name} ({target.address})")
        place = _prepare(ctx, host, profile)
        progress(f"pushing {base} to {host.name}")
        run_git(ctx.repo.main, "push", "-q", "--no-verify", _url(target, place.repo),
                f"+{commit}:{BASE_PREFIX}{name}", env=_git_ssh(target))  # fmt: skip
        worktree = place.worktree(name)
        try:
            task = _open(ctx, registry, place, request, name, base, profile, worktree)
        except BaseException:
            _take_back(target, place.repo, name, worktree)
            raise
        registry.add(task)
        ctx.store.journal("new", task=task_to_dict(task))
    return task


def _prepare(ctx: Context, host: Host, profile: AgentProfile) -> Place:
    folder = naming.session_for(ctx.repo.main)
    prepared, agent, tmux = ssh.run_batch(
        host.target,
        [
            ["sh", "-c", _PREPARE, "sh", host.path, folder],
            ["sh", "-c", 'command -v "$1"', "sh", profile.command[0]],
            ["tmux", "-V"],
        ],
    )
    root = _check(prepared, host.name, f"making the repository under {host.path}").strip()
    if agent.status != 0:
        raise MuxError(f"agent {profile.command[0]!r} is not installed on host {host.name}")
    if tmux.status != 0:
        raise MuxError(f"tmux is not installed on host {host.name} (need tmux >= 3.2)")
    return Place(host, root)


def _open(
    ctx: Context, registry: Registry, place: Place, request: RemoteRequest, name: str, base: str,
    profile: AgentProfile, worktree: str,
) -> Task:  # fmt: skip
    target = place.host.target
    branch = naming.branch_for(name)
    # The base ref as the branch's upstream: `git status --branch` then counts its commits ahead (_host_reports).
    added, remote, merge = ssh.run_batch(
        target,
        [
            ["git", "-C", place.repo, "worktree", "add", "-q", "-b", branch, worktree, f"{BASE_PREFIX}{name}"],
            ["git", "-C", place.repo, "config", f"branch.{branch}.remote", "."],
            ["git", "-C", place.repo, "config", f"branch.{branch}.merge", f"{BASE_PREFIX}{name}"],
        ],
    )
    _check(added, place.host.name, f"git worktree add {worktree}")
    _check(merge if remote.status == 0 else remote, place.host.name, "setting the branch's base")
    argv = list(profile.command)
    if request.prompt and profile.prompt_args is not None:
        argv += config.expand_args(profile.prompt_args, request.prompt)
    port = _port(name, {t.port for t in registry.values() if t.host == place.host.name})
    env = agent_env(name, worktree, port, profile)
    tmux = ctx.tmux_for(place.host.name)
    session = naming.session_for(ctx.repo.main)
    window = tmux.new_window(session, name, Path(worktree), argv, env, task=name)
    task = Task(
        name=name, agent=profile.name, command=tuple(argv), base=base, branch=naming.branch_for(name),
        worktree=worktree, session=session, window=window, created=now_iso(), port=port, prompt=request.prompt,
        host=place.host.name,
    )  # fmt: skip
    if request.prompt and profile.prompt_args is None:
        try:
            _paste_when_drawn(ctx, task, request.prompt)
        except BaseException:
            # Ctrl-C while the agent had not drawn yet left it running on the host, in no task, its worktree
            # removed under it by the taking back.
            with contextlib.suppress(MuxError):
                tmux.kill_window(window)
            raise
    return task


def agent_env(name: str, worktree: str, port: int, profile: AgentProfile) -> dict[str, str]:
    """The environment of a task's agent on its host (no hook of mux's runs there: no events folder)."""
    return {**profile.env, "MUX_TASK": name, "MUX_WORKTREE": worktree, "MUX_PORT": str(port)}


def check_ready(target: ssh.SshTarget, task: Task, profile: AgentProfile) -> None:
    """Before an agent starts again in a task's worktree on its host: the worktree and the agent are there."""
    there, agent = ssh.run_batch(
        target, [["test", "-d", task.worktree], ["sh", "-c", 'command -v "$1"', "sh", profile.command[0]]]
    )
    if there.status != 0:
        raise MuxError(f"the worktree of {task.name!r} is gone on host {target.name} ({task.worktree})")
    if agent.status != 0:
        raise MuxError(f"agent {profile.command[0]!r} is not installed on host {target.name}")


def _paste_when_drawn(ctx: Context, task: Task, text: str) -> None:
    """An agent that takes no prompt on its command line gets it typed once it has drawn its first screen."""
    tmux = ctx.tmux_for(task.host)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not tmux.capture([task.window]).get(task.window, "").strip():
        time.sleep(0.1)
    tmux.send_text(task.window, text)


def _port(name: str, taken: set[int]) -> int:
    """The first port of a block no other task on the host holds (the host's own listeners are not looked at)."""
    start = int(hashlib.sha1(name.encode()).hexdigest(), 16) % PORT_BLOCKS
    for i in range(PORT_BLOCKS):
        first = PORT_FIRST + ((start + i) % PORT_BLOCKS) * PORT_BLOCK
        if first not in taken:
            return first
    raise MuxError("no free block of ports left on the host for the task's MUX_PORT")


def _take_back(target: ssh.SshTarget, repo: str, name: str, worktree: str) -> None:
    """Undo a creation that failed half-way: the worktree (nothing of the agent's in it yet), branch, base ref."""
    with contextlib.suppress(MuxError):  # the host went away: what is left there holds no work
        ssh.run_batch(
            target,
            [
                ["git", "-C", repo, "worktree", "remove", "--force", worktree],
                ["git", "-C", repo, "branch", "-D", naming.branch_for(name)],
                ["git", "-C", repo, "update-ref", "-d", f"{BASE_PREFIX}{name}"],
            ],
        )


# -- reading ---------------------------------------------------------------------------------------------------


def reports(
    ctx: Context, tasks: Sequence[Task], profile_of: Callable[[str], AgentProfile], with_changes: bool = True
) -> dict[str, TaskReport]:
    """Each remote task's report: one batched round trip per host, all hosts at once; a host that cannot be
    reached makes its tasks `unknown` with the reason, within its ssh_timeout."""
    by_host: dict[str, list[Task]] = {}
    for task in tasks:
        by_host.setdefault(task.host or "", []).append(task)
    found: dict[str, TaskReport] = {}

    def read(host: str, mine: list[Task]) -> None:
        try:
            found.update(_host_reports(ctx, host, mine, profile_of, with_changes))
        except MuxError as exc:
            for task in mine:
                found[task.name] = TaskReport(task, TaskStatus(State.UNKNOWN, str(exc)), None)

    threads = [threading.Thread(target=read, args=item, daemon=True) for item in by_host.items()]
    for thread in threads[1:]:
        thread.start()
    if threads:
        threads[0].run()  # the first host in this thread: one host costs no thread
    for thread in threads[1:]:
        thread.join()
    return found


def _host_reports(
    ctx: Context, host: str, tasks: list[Task], profile_of: Callable[[str], AgentProfile], with_changes: bool
) -> dict[str, TaskReport]:
    """One round trip: one tmux call lists the panes and reads every task's screen, then per task one `git status`
    (its ahead count too: the branch's upstream is its base ref) and, with changes, one `git diff --numstat`."""
    marker = f"MUXS{uuid.uuid4().hex}"
    windows = [task.window or "none" for task in tasks]
    tmux = ["-u", "list-panes", "-a", "-F", SNAPSHOT_FORMAT, ";", *capture_args(windows, marker)]
    commands: list[list[str]] = [tmux_argv(REMOTE_SOCKET, "tmux", *tmux)]
    for task in tasks:
        git = ["git", "--no-optional-locks", "-C", task.worktree]
        commands.append([*git, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"])
        if with_changes:
            commands.append([*git, "diff", "--numstat", "-z", "HEAD"])
    results = ssh.run_batch(target_of(host), commands)
    listing, rest = results[0], results[1:]
    listed, _, _ = listing.stdout.partition(f"{marker}-0\n")
    panes = parse_snapshot(listed)
    # A window gone since the listing stops tmux at its capture: the screens after it are not read this time.
    screens = split_sections(listing.stdout, marker)
    server_running = listing.status == 0 or not is_no_server(listing.stderr)
    per_task = 2 if with_changes else 1
    now = time.time()
    found = {}
    for index, task in enumerate(tasks):
        status, *numstat = rest[index * per_task : (index + 1) * per_task]
        pane = next(
            (p for p in panes if p.window_id == task.window and p.task == task.name and p.session == task.session),
            None,
        )
        observation = classifier.Observation(
            pane=pane,
            screen=screens.get(index) if pane is not None else None,
            worktree_exists=status.status == 0,
            server_running=server_running,
            created=_epoch(task.created),
            now=now,
            events=[],
        )
        state = classifier.classify(observation, profile_of(task.agent).status)
        if state.state is State.MISSING and not server_running:
            state = TaskStatus(State.MISSING, f"no tmux server on host {host}")
        changes = _changes(status.stdout, numstat[0].stdout) if numstat and status.status == 0 else None
        found[task.name] = TaskReport(task, state, changes)
    return found


def _epoch(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _status_entries(porcelain: str) -> tuple[int, int]:
    """(changed paths, commits ahead of the upstream) from `git status --porcelain=v2 [--branch] -z`."""
    dirty = ahead = 0
    skip = False
    for field in porcelain.split("\0"):
        if skip:  # a rename's original path, a field of its own
            skip = False
        elif field.startswith("# branch.ab "):
            words = field.split()
            count = words[2].lstrip("+") if len(words) > 2 else ""
            ahead = int(count) if count.isdigit() else 0
        elif field[:2] in ("1 ", "u ", "? "):
            dirty += 1
        elif field[:2] == "2 ":
            dirty += 1
            skip = True
    return dirty, ahead


def _changes(porcelain: str, numstat: str) -> Changes:
    dirty, ahead = _status_entries(porcelain)
    added = removed = 0
    for field in numstat.split("\0"):
        parts = field.split("\t")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            added += int(parts[0])
            removed += int(parts[1])
    return Changes(dirty, added, removed, ahead, 0)


def diff(task: Task, stat: bool) -> str:
    """`mux diff` of a remote task: its changes against its base there, uncommitted and untracked files too."""
    result = ssh.run(
        target_of(task.host or ""),
        ["sh", "-c", _DIFF, "sh", task.worktree, f"{BASE_PREFIX}{task.name}", "--stat" if stat else "--patch"],
        ok=None,
    )
    return _check(result, task.host or "", "git diff")


# -- bringing work home, removing ------------------------------------------------------------------------------


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _snapshot(target: ssh.SshTarget, task: Task, message: str) -> str | None:
    """The commit that holds all of the task's work on the host (its branch tip when nothing is uncommitted); None
    when its worktree is gone, the tip then (or None with no branch either)."""
    snap, tip = ssh.run_batch(
        target,
        [
            ["sh", "-c", _SNAPSHOT, "sh", task.worktree, message, task.branch],
            ["git", "-C", repo_of(task), "rev-parse", "--verify", "-q", f"refs/heads/{task.branch}^{{commit}}"],
        ],
    )
    if snap.status == 0 and snap.stdout.strip():
        return snap.stdout.strip()
    return (tip.stdout.strip() or None) if tip.status == 0 else None


def _unsaved(target: ssh.SshTarget, task: Task) -> list[str]:
    """What removing the task loses unless saved: commits on its branch past its base, uncommitted files."""
    status, ahead = ssh.run_batch(
        target,
        [
            ["git", "-C", task.worktree, "status", "--porcelain=v2", "-z", "--untracked-files=all"],
            ["git", "-C", repo_of(task), "rev-list", "--count", f"{BASE_PREFIX}{task.name}..{task.branch}"],
        ],
    )
    found = []
    count = ahead.stdout.strip()
    if count.isdigit() and int(count):
        found.append(f"{count} commit{'s' if int(count) != 1 else ''} on {task.branch} on host {task.host}")
    dirty, _ = _status_entries(status.stdout)
    if status.status == 0 and dirty:
        found.append(f"{dirty} uncommitted file{'s' if dirty != 1 else ''} in its worktree on {task.host}")
    return found


def unsaved_work(task: Task) -> list[str]:
    """`_unsaved` of a task, asked of its host; refused when the host cannot be reached."""
    return _unsaved(target_of(task.host or ""), task)


def fetch(ctx: Context, target: ssh.SshTarget, task: Task, remote_ref: str, local_ref: str) -> None:
    run_git(ctx.repo.main, "fetch", "-q", "--no-tags", "--no-write-fetch-head", _url(target, repo_of(task)),
            f"+{remote_ref}:{local_ref}", env=_git_ssh(target))  # fmt: skip


def remove_locked(
    ctx: Context, registry: Registry, task: Task, force: bool, on_removing: Callable[[], object] | None = None
) -> str | None:
    """`mux rm` of a remote task: the work saved as a recovery ref on the host AND fetched into the same ref here,
    then the window, worktree, branch and base ref removed there. Refused, changing nothing, when the host cannot
    be reached (its work cannot be saved), or without `force` when there is work that exists nowhere else."""
    target = target_of(task.host or "")
    try:
        ssh.connect(target)
    except HostUnreachableError as exc:
        raise HostUnreachableError(
            f"not removing {task.name!r}: {exc}; its work is there, nothing was removed"
        ) from None
    lost = _unsaved(target, task)
    if lost and not force:
        raise WouldLoseWorkError(
            f"task {task.name!r} has work that exists nowhere else: {'; '.join(lost)}"
            f" (merge it, or `mux rm --force {task.name}` keeps a recovery ref, here and on the host)"
        )
    stamp = _stamp()
    commit = _snapshot(target, task, f"mux recovery: {task.name} at {stamp}")
    ref = None
    if commit is not None:
        ref = f"{recovery_refs.RECOVERY_PREFIX}{task.name}/{stamp}"
        (saved,) = ssh.run_batch(target, [["git", "-C", repo_of(task), "update-ref", ref, commit]])
        _check(saved, task.host or "", f"saving {ref}")
        fetch(ctx, target, task, ref, ref)
        ctx.store.journal("recovery", name=task.name, ref=ref, lost=lost, record=task_to_dict(task), sessions=[])
    if on_removing is not None:
        on_removing()  # the point of no return: the work is saved here and there
    tmux = ctx.tmux_for(task.host)
    if task.window:
        tmux.kill_window(task.window)
    ssh.run_batch(
        target,
        [
            ["git", "-C", repo_of(task), "worktree", "remove", "--force", task.worktree],
            ["git", "-C", repo_of(task), "branch", "-D", task.branch],
            ["git", "-C", repo_of(task), "update-ref", "-d", f"{BASE_PREFIX}{task.name}"],
            ["git", "-C", repo_of(task), "update-ref", "-d", f"{MERGING_PREFIX}{task.name}"],
        ],
    )
    if repository.branch_exists(ctx.repo, task.branch):  # fetched by a merge: the host's branch, now merged
        repository.delete_branch(ctx.repo, task.branch)
    registry.remove(task.name)
    return ref


def bring_home(ctx: Context, task: Task, message: str) -> None:
    """Before `mux merge` of a remote task: its work (uncommitted files committed with `message`, on top of its
    branch, in a ref of their own: nothing on the host changes) fetched into the local branch the merge reads."""
    target = target_of(task.host or "")
    commit = _snapshot(target, task, message)
    if commit is None:
        raise MuxError(f"branch '{task.branch}' of task {task.name!r} is gone on host {task.host}: nothing to merge")
    (kept,) = ssh.run_batch(
        target, [["git", "-C", repo_of(task), "update-ref", f"{MERGING_PREFIX}{task.name}", commit]]
    )
    _check(kept, task.host or "", "keeping the work to merge")
    fetch(ctx, target, task, f"{MERGING_PREFIX}{task.name}", f"refs/heads/{task.branch}")


def drop_fetched(ctx: Context, task: Task) -> None:
    """After a merge of a remote task that was refused: the branch fetched for it goes, as if never fetched."""
    if repository.branch_exists(ctx.repo, task.branch):
        repository.delete_branch(ctx.repo, task.branch)
    with contextlib.suppress(MuxError):
        ssh.run_batch(
            target_of(task.host or ""),
            [["git", "-C", repo_of(task), "update-ref", "-d", f"{MERGING_PREFIX}{task.name}"]],
        )
