"""The SSH room: every ssh call, one quoting of a remote command line, one connection per host kept open."""
