"""The tmux room: every tmux call, windows by id, batched screen reads."""
