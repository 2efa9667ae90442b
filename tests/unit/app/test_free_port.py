"""Ports for servers the tests and `python -m app cluster` start: free, and outside the range the system hands out
to client connections, so no connection takes one before its server binds it."""

import socket

from app.localservers import _ephemeral_low, free_port


def test_a_free_port_is_bindable_and_below_the_ephemeral_range():
    low = _ephemeral_low()
    ports = {free_port() for _ in range(50)}
    assert all(10_000 <= p < low for p in ports)
    assert len(ports) > 40  # spread over the range, not one port again and again
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: nothing holds it


def test_a_port_in_use_is_never_given():
    holders = []
    try:
        for _ in range(50):
            s = socket.socket()
            port = free_port()
            s.bind(("127.0.0.1", port))
            s.listen()
            holders.append((s, port))
        held = {port for _, port in holders}
        assert all(free_port() not in held for _ in range(200))
    finally:
        for s, _ in holders:
            s.close()
