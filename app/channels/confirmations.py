"""A paid order's confirmation email, sent to the account that bought it (a guest has no address to send to)."""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable

from app.channels.email import EmailService
from app.retail.events import OrderPaid


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


class OrderConfirmations:
    def __init__(self, email: EmailService, email_of: Callable[[str], Awaitable[str | None]],
                 console_url: Callable[[], str]) -> None:
        self._email = email
        self._email_of = email_of
        self._console_url = console_url

    async def on_paid(self, event: OrderPaid) -> None:
        """Queue the confirmation durably; its message id is the order's, so a repeat never sends a second one."""
        order = event.order
        to = await self._email_of(order.owner)  # the account is read from the store if not held
        if to is None:
            return
        departs = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(order.departure_at))
        lines = [f"{item.quantity} × {item.name}: {_money(item.total_cents, order.currency)}" for item in order.items]
        link = f"{self._console_url()}/#/account?order={order.id}"
        text = "\n".join([
            f"Thank you for flying with Contrail. Your booking {order.id} is paid and confirmed.",
            f"Flight {order.flight_id}, departing {departs}, for {order.passengers} passenger(s).", "", *lines,
            f"Total paid: {_money(order.total_cents, order.currency)}", "",
            f"Your {len(order.barcodes)} boarding and service barcode(s) are in your account: {link}"])
        body = "".join([
            f"<h1>Booking {html.escape(order.id)} confirmed</h1>",
            f"<p>Flight <b>{html.escape(order.flight_id)}</b>, departing {departs}, "
            f"for {order.passengers} passenger(s).</p><ul>",
            *(f"<li>{html.escape(line)}</li>" for line in lines),
            f"</ul><p>Total paid: <b>{_money(order.total_cents, order.currency)}</b></p>",
            f'<p><a href="{html.escape(link)}">See your barcodes</a></p>'])
        await self._email.enqueue(to, f"Your Contrail booking {order.id} is confirmed", text, body,
                                  user_id=order.owner.partition(":")[2], message_id=f"msg_conf_{order.id}")
