"""Recommendations: interactions, signals, strategies and their evaluation protocol (pure, no I/O)."""
