"""The NATS inbound edge: bid agents in a queue group, and ingest over `ingest.{source}.>` (when `nats.url` is set)."""
