"""Pure status logic and the agents' hook side: classification, hook adapters and events, changes, radar."""
