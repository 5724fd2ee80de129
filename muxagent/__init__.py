"""mux: a tmux-based multiplexer for AI coding agents, one git worktree and tmux window per task."""
