"""`make run`'s demo data gives every console page something to show on first open."""

import json
import sqlite3
import time

from adapters.pii import FILE_NAME as PII_KEY_FILE
from adapters.pii import cipher_from
from bench.server import ServerProcess


def test_the_demo_carrier_has_orders_in_every_state_stars_mail_and_a_promotion(tmp_path):
    server = ServerProcess(tmp_path / "var")
    for command in ("migrate", "seed-demo"):
        done = server.cli(command)
        assert done.returncode == 0, done.stderr
    assert "demo activity" in done.stdout
    db = sqlite3.connect(tmp_path / "var" / "contrail.db")
    states = {state for (state,) in db.execute("SELECT DISTINCT state FROM orders")}
    assert states == {"PROPOSED", "PAYMENT_PENDING", "FULFILLED", "ARCHIVED", "EXPIRED", "CANCELLED"}
    # The history is played out in the past: nothing is stamped later than the seed ran, and the flown order's
    # flight really has left.
    seeded_by = time.time()
    stamps = [json.loads(body) for (body,) in db.execute("SELECT body FROM orders")]
    assert max(max(o["created_at"], o["updated_at"]) for o in stamps) <= seeded_by
    (flown,) = [o for o in stamps if o["state"] == "ARCHIVED"]
    (departed,) = db.execute("SELECT json_extract(body, '$.departure_at') FROM flights WHERE id = ?",
                             (flown["items"][0]["product_id"],)).fetchone()
    assert departed < seeded_by
    # PAID is the moment between payment and fulfilment: a paid order is FULFILLED in the same transaction.
    # Emails are sealed at rest: an account is found by the keyed hash of its email, as sign-in finds it.
    cipher = cipher_from("", [], "", tmp_path / "var" / PII_KEY_FILE)
    (traveller,) = db.execute("SELECT id FROM accounts WHERE email_hash = ?",
                              (cipher.lookup("traveller@contrail.demo"),)).fetchone()
    kinds = {kind for (kind,) in db.execute("SELECT kind FROM loyalty_ledger WHERE user_id = ?", (traveller,))}
    assert {"earn", "redeem"} <= kinds
    assert db.execute("SELECT count(*) FROM loyalty_promotions").fetchone() == (1,)
    subjects = [json.loads(cipher.open(body, "outbox.body"))["subject"]
                for (body,) in db.execute("SELECT body FROM outbox")]
    # Four orders were paid (one has since flown, one was cancelled), each confirmed once.
    assert sum("is confirmed" in s for s in subjects) == 4 and "Madeira is calling" in subjects
    assert {k for (k,) in db.execute("SELECT kind FROM email_events")} >= {"open", "click"}
    # The carrier's destinations and ancillaries are recommendable items; the paid orders are purchases.
    items = dict(db.execute("SELECT item_id, json_extract(body, '$.category') FROM reco_items"))
    assert items["dest-BCN"] == "destination" and items["lounge-pass"] == "ancillary" and len(items) == 18
    bought = {i for (i,) in db.execute("SELECT item_id FROM reco_interactions WHERE user_id = ? AND kind = "
                                       "'purchase'", (traveller,))}
    assert bought and all(i in items for i in bought)
    # A day of the members' browsing, mostly within each one's taste, for co-views, trends and training.
    views = dict(db.execute("SELECT kind, count(*) FROM reco_interactions WHERE user_id LIKE 'member-%' GROUP BY kind"))
    assert views["product_view"] > 2_000 and {"click", "cart_add", "purchase"} <= set(views)
    assert "demo browsing" in done.stdout
    again = server.cli("seed-demo")
    assert again.returncode == 0 and "activity: already loaded" in again.stdout
    assert db.execute("SELECT count(*) FROM orders").fetchone() == (7,)
