"""Shell completion: the scripts generated from the CLI and the fast TAB entry."""
