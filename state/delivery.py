"""What bids turned into: wins, losses, charges, impressions and daily spend."""

from __future__ import annotations


class AlreadyCharged(Exception):
    """This bid id has been charged before."""
