"""What a sandboxed task's agent may write, and its command line wrapped in bubblewrap (`mux new --sandbox`).

Writable: the task's worktree, its own git dir, an object store of its own (git/object_stores.py: the
repository's is read-only, as `rm -rf .git/objects` would take every branch with it), the folder of its branch's
ref (every other ref in that folder bound read-only over it: git writes a ref through `NAME.lock` beside it, so the
folder must be writable) and its reflog, the task's hook event file, and the agent's own state dirs its profile names
(`sandbox_writable`). Everything else is read-only, and the user's credentials are hidden. The worktree's
`.git` file and its git dir's `gitdir` and `commondir` stay read-only: rewritten, they would point mux's own
git calls on the task (merge, checkpoints) at another repository or worktree.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from muxagent.commands.context import Context
from muxagent.errors import SandboxError
from muxagent.git import object_stores, repository
from muxagent.model import AgentProfile, Task
from muxagent.sandbox import bwrap
from muxagent.status import events

# Credentials below $HOME that a read-only home would still let an agent read and, with the network on, send away.
SECRETS = (
    ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".config/gh", ".docker", ".kube", ".netrc",
    ".git-credentials", ".password-store", ".pypirc",
)  # fmt: skip

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")

# Inside the sandbox only. Claude Code refuses its skip-permissions flag to root unless told it is sandboxed; git
# must not start a background gc, which would fail on the read-only packed-refs and leave a gc.log behind.
SANDBOX_ENV = {
    "IS_SANDBOX": "1",
    "MUX_SANDBOX": "1",
    "GIT_CONFIG_COUNT": "2",
    "GIT_CONFIG_KEY_0": "gc.auto",
    "GIT_CONFIG_VALUE_0": "0",
    "GIT_CONFIG_KEY_1": "maintenance.auto",
    "GIT_CONFIG_VALUE_1": "false",
}


def launch_argv(ctx: Context, task: Task, profile: AgentProfile, argv: list[str], env: Mapping[str, str]) -> list[str]:
    """`argv` as the task's window runs it: inside a sandbox for a sandboxed task (SandboxError when none can be
    made here), as it is otherwise. `env` is what the agent gets on top of mux's own environment."""
    if not task.sandbox:
        return argv
    bwrap.check()
    return bwrap.wrap(mounts(ctx, task, profile, {**os.environ, **env}), argv)


def mounts(ctx: Context, task: Task, profile: AgentProfile, outside: Mapping[str, str]) -> bwrap.Mounts:
    """The sandbox of `task`, whose agent would get the environment `outside` unsandboxed."""
    defaults = {
        key: text
        for key, value in profile.sandbox_env.items()
        if not outside.get(key) and (text := _expand(value, outside))
    }
    env = {**outside, **defaults}
    _seed(profile, env)
    worktree = Path(task.worktree)
    common = ctx.repo.common_dir
    own_git_dir = _own_git_dir(worktree, common)
    ref = common / "refs" / "heads" / task.branch
    hook_file = events.events_path(ctx.store.root, task.name)
    _touch(hook_file)
    agent_dirs = agent_writable(profile, env)
    objects = object_stores.lend(ctx.repo, task.name)
    writable = [worktree, own_git_dir, objects, ref.parent, common / "logs/refs/heads" / task.branch]
    writable += [hook_file, *agent_dirs]
    others = sorted(path for path in _entries(ref.parent) if path.name != ref.name)
    read_only = [worktree / ".git", own_git_dir / "gitdir", own_git_dir / "commondir", *others]
    home = Path(env.get("HOME") or Path.home())
    hidden = [home / secret for secret in SECRETS if not _under_any(home / secret, agent_dirs)]
    hidden += _tmux_socket_dirs(env)
    return bwrap.Mounts(
        workdir=worktree,
        readable=tuple(
            Path(os.path.realpath(path)) for path in _needed(ctx, home, profile, env) if bwrap.hidden_by_sandbox(path)
        ),
        writable=tuple(writable),
        read_only=tuple(read_only),
        hidden=tuple(hidden),
        env={
            **SANDBOX_ENV,
            **defaults,
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(common / "objects"),
        },
        network=task.sandbox_network,
    )


def agent_writable(profile: AgentProfile, env: Mapping[str, str]) -> list[Path]:
    """The profile's `sandbox_writable`, `~` and `$VAR` expanded (an entry naming an unset variable is left out);
    a folder (an entry ending in `/`) is made when missing, so that a first run can write it."""
    found = []
    for entry in profile.sandbox_writable:
        text = _expand(entry, env)
        if text is None:
            continue
        path = Path(os.path.normpath(text))
        if entry.endswith("/"):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SandboxError(f"cannot make {path} for the sandbox of {profile.name!r}: {exc.strerror}") from None
        found.append(path)
    return found


def _seed(profile: AgentProfile, env: Mapping[str, str]) -> None:
    """Copy each `sandbox_seed` source to its target when the target is missing (a first sandboxed start)."""
    for target_entry, source_entry in profile.sandbox_seed.items():
        target, source = _expand(target_entry, env), _expand(source_entry, env)
        if target is None or source is None or os.path.lexists(target) or not os.path.isfile(source):
            continue
        try:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        except OSError as exc:
            raise SandboxError(f"cannot copy {source} to {target} for the sandbox: {exc.strerror}") from None


def _expand(entry: str, env: Mapping[str, str]) -> str | None:
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = env.get(match.group(1) or match.group(2) or "")
        missing = missing or not found
        return found or ""

    text = _VARIABLE.sub(value, entry)
    if missing:
        return None
    if text.startswith("~"):
        text = str(Path(env.get("HOME") or Path.home())) + text[1:]
    return text if os.path.isabs(text) else None


def _own_git_dir(worktree: Path, common: Path) -> Path:
    """The worktree's git dir, refused unless it is one of the repository's: the `.git` file is the worktree's
    own, and one pointing elsewhere would have that folder bound writable."""
    found = Path(os.path.realpath(repository.git_dir(worktree)))
    if found.parent != Path(os.path.realpath(common / "worktrees")):
        raise SandboxError(f"the .git file of {worktree} does not point into {common / 'worktrees'}: no sandbox")
    return found


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))


def _under_any(path: Path, folders: list[Path]) -> bool:
    return any(path == folder or folder in path.parents or path in folder.parents for folder in folders)


def _tmux_socket_dirs(env: Mapping[str, str]) -> list[Path]:
    """The folders of the tmux servers' sockets: a tmux server runs any command it is asked to, outside."""
    found = [Path(env.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"]
    socket = (env.get("TMUX") or "").split(",")[0]
    if socket:
        found.append(Path(socket).parent)
    return found


def _needed(ctx: Context, home: Path, profile: AgentProfile, env: Mapping[str, str]) -> list[Path]:
    """What the agent, its hooks and its git read: the repository (its main checkout too, so that a write there
    fails rather than land in the private /tmp unseen), mux's state and code, the Python that runs the hook, the
    agent's program, the home and the git config it names."""
    needed = [ctx.repo.main, ctx.repo.common_dir, ctx.store.root, home, Path(__file__).resolve().parents[2]]
    needed += [Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent]
    program = profile.command[0]
    located = program if os.path.isabs(program) else shutil.which(program, path=env.get("PATH"))
    if located:
        needed.append(Path(os.path.realpath(located)).parent)
    needed += [Path(word) for word in profile.command[1:] if os.path.isabs(word)]
    needed += [Path(env[key]) for key in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM") if env.get(key)]
    # The programs the agent's own runs on PATH, its interpreter first (`#!/usr/bin/env node`): a node under /tmp
    # stayed hidden and Claude Code exited 1 without a word, when mux itself was installed elsewhere (NixOS keeps
    # the whole PATH under /run). A private folder itself stays private: /tmp on PATH would show every socket there.
    needed += [Path(entry) for entry in env.get("PATH", "").split(os.pathsep) if _under_private(entry)]
    return needed


def _under_private(entry: str) -> bool:
    real = os.path.realpath(entry) if os.path.isabs(entry) else ""
    return bool(real) and bwrap.hidden_by_sandbox(Path(real)) and real not in bwrap.PRIVATE_DIRS
