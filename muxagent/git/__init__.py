"""The git room: every git call, worktrees, status, recovery refs, merging."""
