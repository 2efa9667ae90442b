"""What Contrail knows: entity types, in-memory indexes and their SQLite persistence."""
