"""Contrail: what the system does, one subpackage per domain, plus the composition root."""

__version__ = "0.1.0"
