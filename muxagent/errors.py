"""One exception family for expected failures; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class MuxError(Exception):
    exit_code = 1


class UsageError(MuxError):
    exit_code = 2


class NotARepoError(MuxError):
    pass


class InvalidNameError(MuxError):
    pass


class TaskExistsError(MuxError):
    pass


class UnknownTaskError(MuxError):
    pass


class TmuxError(MuxError):
    """tmux is missing, its server cannot be reached, or a tmux command failed."""


class GitError(MuxError):
    """A git command failed; the message carries the command and git's own words."""


class BranchExistsError(GitError):
    """A branch mux was to create is there already."""


class AgentNotFoundError(MuxError):
    pass


class ConfigError(MuxError):
    pass


class StoreError(MuxError):
    pass


class CheckoutPendingError(MuxError):
    """The task's worktree has no files yet: its window is still checking them out (or failed to)."""


class WouldLoseWorkError(MuxError):
    """Refused because the operation would drop work that exists nowhere else."""


class ConflictError(MuxError):
    exit_code = 3


class MergeConflictError(ConflictError):
    """A merge, rebase or sync would conflict (or did, in a task's worktree); `paths` are the files involved."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class WaitTimeoutError(MuxError):
    exit_code = 4


class AgentBusyError(MuxError):
    """`mux send` refused, typing nothing: the agent is in the middle of a turn."""

    exit_code = 5


class NotTakenError(MuxError):
    """`mux send` typed the text, but the agent showed no sign of taking it (no hook, no new screen)."""

    exit_code = 6


class HostUnreachableError(MuxError):
    """ssh cannot reach a task's host (refused, timed out, no key, a changed host key): nothing there is touched."""


class SandboxError(MuxError):
    """A sandbox cannot be made here (bubblewrap missing, no user namespaces) or around this task."""
