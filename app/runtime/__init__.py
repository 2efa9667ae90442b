"""What every domain shares at run time: the event bus (and, as they move here, the supervisor, metrics,
health, logs and the clock)."""
