"""The bid ledger: live bids are found by their ids, expired, overwritten and forged ones are not."""


def test_the_bid_ledger_finds_live_bids_and_forgets_expired_and_overwritten_ones(clock):
    from app.bidding.notices import BidLedger
    forgotten: list[int] = []
    ledger = BidLedger(clock, max_bids=3, on_forgotten_live=lambda: forgotten.append(1))
    now = clock.now()
    first = ledger.issue("r1", "1", "c", "cr", "u1", 1_000, now + 10)
    second = ledger.issue("r2", "1", "c", "cr", "u2", 2_000, now + 20)
    assert ledger.find(first).user_id == "u1" and ledger.find(second).price_micros == 2_000
    assert len({first, second}) == 2 and len(first) == 36 and int(first, 16) >= 0  # hex: safe in a URL
    forged = first[:12] + ("0" if first[12] != "0" else "1") + first[13:]  # the right slot, a wrong secret
    for bad in (forged, "", "nope", first[:12], "zz" + first[2:], "-" + first[1:], first + "0"):
        assert ledger.find(bad) is None, bad
    clock.advance(15)
    assert ledger.find(first) is None and ledger.find(second) is not None  # expired, still live
    assert ledger.sweep() == 1 and len(ledger) == 1
    later = [ledger.issue(f"r{i}", "1", "c", "cr", "u", 1, clock.now() + 60) for i in range(3)]
    assert ledger.find(second) is None  # more than max_bids live: the oldest is forgotten first
    assert ledger.forgotten_live == len(forgotten) == 1  # second was live (first's slot held an expired bid)
    assert all(ledger.find(b) is not None for b in later) and len(ledger) == 3
    assert ledger.sweep() == 0
