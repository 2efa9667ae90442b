"""What retail tells the other domains, on the bus, once the change is committed."""

from __future__ import annotations

from dataclasses import dataclass

from state.changes import ChangeOffer
from state.orders import Order


@dataclass(frozen=True, slots=True)
class OrderPaid:
    """The order's payment was approved and it is fulfilled."""
    order: Order


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """The order was cancelled: by its owner (with the quoted refund), by a failed payment, or by expiry."""
    order: Order


@dataclass(frozen=True, slots=True)
class OrderChanged:
    """A paid order was changed (another flight, services added or removed): `order` is its new version,
    `previous` the one it replaced, `change_offer` what was confirmed (total_cents > 0 paid, < 0 refunded)."""
    order: Order
    previous: Order
    change_offer: ChangeOffer
