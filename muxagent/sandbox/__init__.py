"""The sandbox room: bubblewrap around an agent, every bwrap call, what a sandbox mounts."""
