"""mux's own files: registry, intents, trust, queues, monitor state."""
