"""The verbs: one module per command or close family, below the CLI and above the outside systems."""
