"""The embedded default: SQLite through one group-commit writer, one store per aggregate (all its SQL)."""
