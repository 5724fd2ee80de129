"""The long-running watcher that marks windows, rings, notifies and delivers queued prompts."""
