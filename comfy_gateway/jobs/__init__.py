"""Jobs: the one Job record, its state machine, and the store that keeps jobs, events and queues."""
