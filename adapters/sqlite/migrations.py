"""Numbered schema migrations, applied at start and recorded in schema_migrations.

Append only: never edit a migration that has shipped; add the next number instead.
"""

from adapters.sqlite.migrate import Migration

RECORDS = [
    Migration(1, "platform", """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE idempotency (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX idempotency_expiry ON idempotency(expires_at);
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL
        );
        CREATE TABLE demo_data (
            name TEXT PRIMARY KEY,
            loaded_at REAL NOT NULL
        )
    """),
    Migration(2, "bidding", """
        CREATE TABLE campaigns (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE profiles (
            user_id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE impressions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX impressions_at ON impressions(at);
        CREATE TABLE bid_outcomes (
            bid_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            price_micros INTEGER,
            reason INTEGER,
            at REAL NOT NULL,
            PRIMARY KEY (bid_id, kind)
        );
        CREATE TABLE campaign_spend (
            campaign_id TEXT NOT NULL,
            day TEXT NOT NULL,
            spent_micros INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, day)
        )
    """),
    Migration(3, "retail", """
        CREATE TABLE flights (
            id TEXT PRIMARY KEY,
            departure_at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE TABLE products (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL
        );
        CREATE TABLE offers (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            state TEXT NOT NULL,
            expires_at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX offers_live ON offers(state, expires_at);
        CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE TABLE payment_events (
            id TEXT PRIMARY KEY,
            payment_id TEXT NOT NULL,
            at REAL NOT NULL
        )
    """),
    Migration(4, "loyalty", """
        CREATE TABLE loyalty_ledger (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            transaction_id TEXT,
            body TEXT NOT NULL
        );
        CREATE UNIQUE INDEX loyalty_ledger_transaction ON loyalty_ledger(kind, transaction_id)
            WHERE transaction_id IS NOT NULL;
        CREATE INDEX loyalty_ledger_user ON loyalty_ledger(user_id, id);
        CREATE TABLE loyalty_members (
            user_id TEXT PRIMARY KEY,
            body TEXT NOT NULL
        );
        CREATE TABLE loyalty_promotions (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL
        )
    """),
    Migration(5, "channels", """
        CREATE TABLE suppressions (
            identifier TEXT NOT NULL,
            channel TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (identifier, channel)
        );
        CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX outbox_state ON outbox(state, created_at);
        CREATE TABLE email_events (
            id TEXT PRIMARY KEY,
            activation_id TEXT,
            message_id TEXT,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX email_events_activation ON email_events(activation_id)
    """),
    Migration(6, "inbox", """
        CREATE TABLE inbox (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX inbox_user ON inbox(user_id, at)
    """),
    Migration(7, "activation_counts", """
        CREATE TABLE activation_counts (
            user_id TEXT NOT NULL,
            day TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (user_id, day)
        )
    """),
    # An offer's row holds its own fields and the id of the priced bundle (draft) it was made from;
    # the bundle's JSON is written once to offer_drafts and shared. Offers stored before keep their
    # own body (and no draft): exactly one of the two. The retention sweep finds drafts by age and
    # asks whether any offer is still made from one: both are index lookups.
    Migration(8, "shared_offer_drafts", """
        CREATE TABLE offer_drafts (
            id TEXT PRIMARY KEY,
            stored_at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX offer_drafts_age ON offer_drafts(stored_at);
        CREATE TABLE offers_shared (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            draft_id TEXT REFERENCES offer_drafts(id),
            body TEXT,
            CHECK ((draft_id IS NULL) <> (body IS NULL))
        );
        INSERT INTO offers_shared(id, owner, state, created_at, expires_at, body)
            SELECT id, owner, state, coalesce(json_extract(body, '$.created_at'), 0.0), expires_at, body FROM offers;
        DROP TABLE offers;
        ALTER TABLE offers_shared RENAME TO offers;
        CREATE INDEX offers_live ON offers(state, expires_at);
        CREATE INDEX offers_draft ON offers(draft_id)
    """),
    # The spend report reads today's win, loss and charge notices per campaign.
    Migration(9, "bid_outcomes_by_time", "CREATE INDEX bid_outcomes_at ON bid_outcomes(at)"),
    # Recommendations: items, and the interactions the features and models are rebuilt from (kept here,
    # apart from the analytics log's retention).
    Migration(10, "reco", """
        CREATE TABLE reco_items (
            item_id TEXT PRIMARY KEY,
            body TEXT NOT NULL
        );
        CREATE TABLE reco_interactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            weight REAL NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX reco_interactions_user ON reco_interactions(user_id, id)
    """),
    # The recommendation model that went live (item embeddings and blend weights), so a restart serves it
    # again instead of the features alone until the next retrain; the last few are kept.
    Migration(11, "reco_models", """
        CREATE TABLE reco_models (
            sequence INTEGER PRIMARY KEY,
            trained_at REAL NOT NULL,
            body BLOB NOT NULL
        )
    """),
    # Lifetime value's fitted models (the purchases it learns from are read from the loyalty ledger).
    Migration(12, "ltv_models", """
        CREATE TABLE ltv_models (
            sequence INTEGER PRIMARY KEY,
            trained_at REAL NOT NULL,
            body BLOB NOT NULL
        )
    """),
    # Campaigns get a workflow: "active" campaigns are "live", "paused" stay paused; each step is in the history.
    Migration(13, "campaign_workflow", """
        UPDATE campaigns SET body = json_set(json_remove(body, '$.status'), '$.state',
            CASE json_extract(body, '$.status') WHEN 'paused' THEN 'paused' ELSE 'live' END)
            WHERE json_type(body, '$.status') IS NOT NULL;
        CREATE TABLE campaign_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            campaign_id TEXT NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            comment TEXT NOT NULL
        );
        CREATE INDEX campaign_history_campaign ON campaign_history(campaign_id, id)
    """),
    # Campaign reports read hourly totals rolled up from the event log (which keeps days, not months); the roll-up's
    # place in the event log is written with its totals. Offer-selection policies keep their state per campaign,
    # and the reward signals they learned from (so a repeated signal teaches nothing twice).
    Migration(14, "campaign_reports_and_policies", """
        CREATE TABLE campaign_stats (
            campaign_id TEXT NOT NULL,
            hour INTEGER NOT NULL,
            bids INTEGER NOT NULL DEFAULT 0,
            wins INTEGER NOT NULL DEFAULT 0,
            impressions INTEGER NOT NULL DEFAULT 0,
            spend_micros INTEGER NOT NULL DEFAULT 0,
            clearing_micros INTEGER NOT NULL DEFAULT 0,
            losses INTEGER NOT NULL DEFAULT 0,
            clicks INTEGER NOT NULL DEFAULT 0,
            conversions INTEGER NOT NULL DEFAULT 0,
            revenue_cents INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (campaign_id, hour)
        ) WITHOUT ROWID;
        CREATE INDEX campaign_stats_hour ON campaign_stats(hour);
        CREATE TABLE nobid_stats (
            hour INTEGER NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (hour, reason)
        ) WITHOUT ROWID;
        CREATE TABLE rollup_cursors (
            name TEXT PRIMARY KEY,
            last_id INTEGER NOT NULL
        );
        CREATE TABLE campaign_policies (
            campaign_id TEXT PRIMARY KEY,
            body BLOB NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE policy_rewards (
            signal_id TEXT PRIMARY KEY,
            campaign_id TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX policy_rewards_at ON policy_rewards(at)
    """),
    # The review tasks opened in the team's task tool (Jira, Asana) for campaigns, and their status as last synced.
    Migration(15, "campaign_tasks", """
        CREATE TABLE campaign_tasks (
            campaign_id TEXT NOT NULL,
            opened_at REAL NOT NULL,
            tool TEXT NOT NULL,
            task_id TEXT NOT NULL,
            task_key TEXT NOT NULL,
            url TEXT NOT NULL,
            status TEXT NOT NULL,
            synced_at REAL NOT NULL,
            error TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, opened_at)
        )
    """),
    Migration(16, "model_versions", """
        CREATE TABLE model_versions (
            model TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            status TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (model, sequence)
        );
        CREATE INDEX model_versions_live ON model_versions(model) WHERE status = 'live'
    """),
    # The wins of the DSPs Contrail routes bids to: one row per (platform, bid), so a repeated win changes nothing.
    Migration(17, "dsp_wins", """
        CREATE TABLE dsp_wins (
            platform TEXT NOT NULL,
            bid_id TEXT NOT NULL,
            cpm_micros INTEGER NOT NULL,
            spend_micros INTEGER NOT NULL,
            at REAL NOT NULL,
            source TEXT NOT NULL,
            PRIMARY KEY (platform, bid_id)
        );
        CREATE INDEX dsp_wins_at ON dsp_wins(at)
    """),
    # Order changes: the change offers a change request is answered with, and every version of a changed order.
    Migration(18, "order_changes", """
        CREATE TABLE change_offers (
            id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            order_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX change_offers_request ON change_offers(request_id);
        CREATE INDEX change_offers_expiry ON change_offers(expires_at);
        CREATE TABLE order_versions (
            order_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            at REAL NOT NULL,
            change_offer_id TEXT,
            body TEXT NOT NULL,
            PRIMARY KEY (order_id, version)
        )
    """),
    # Inventory held, for nodes sharing PostgreSQL (adapters/postgres/migrations.py); one node keeps it in memory
    # and leaves this table empty. Here too so both engines' migrations keep one numbering.
    Migration(19, "shared_inventory", """
        CREATE TABLE inventory (resource TEXT PRIMARY KEY, held INTEGER NOT NULL CHECK (held >= 0))
    """),
    # A member's entries are numbered 1, 2, 3...: an entry is written only as the number after the last one its
    # writer applied, so two nodes (or two requests) deciding on the same balance cannot both commit.
    Migration(20, "loyalty_member_seq", """
        ALTER TABLE loyalty_ledger ADD COLUMN seq INTEGER;
        UPDATE loyalty_ledger SET seq = (SELECT count(*) FROM loyalty_ledger l
                                         WHERE l.user_id = loyalty_ledger.user_id AND l.id <= loyalty_ledger.id);
        CREATE UNIQUE INDEX loyalty_ledger_member_seq ON loyalty_ledger(user_id, seq)
    """),
    # Personal data is sealed at rest (adapters/pii.py): accounts, outgoing mail and email events are found by the
    # keyed hash of their address (mail also by its customer, for erasure). Rows from before are sealed and hashed
    # by the server's re-encryption pass (adapters/sqlite/rewrap.py), not here: SQL has no key.
    Migration(21, "pii_lookup", """
        ALTER TABLE accounts ADD COLUMN email_hash TEXT;
        CREATE UNIQUE INDEX accounts_email_hash ON accounts(email_hash);
        ALTER TABLE outbox ADD COLUMN recipient TEXT;
        ALTER TABLE outbox ADD COLUMN user_id TEXT;
        CREATE INDEX outbox_recipient ON outbox(recipient);
        CREATE INDEX outbox_user ON outbox(user_id);
        ALTER TABLE email_events ADD COLUMN email_hash TEXT;
        CREATE INDEX email_events_email ON email_events(email_hash)
    """),
    # Only live orders are kept in memory (state/orders.py): the start reads them by state, lists read a page in
    # (created_at, id) order (everyone's, one owner's, one state's), and a finished order's barcode is found here.
    Migration(22, "orders_out_of_memory", """
        CREATE INDEX orders_created ON orders(created_at, id);
        CREATE INDEX orders_owner ON orders(owner, created_at, id);
        CREATE INDEX orders_state ON orders(state, created_at, id);
        CREATE TABLE order_barcodes (code TEXT PRIMARY KEY, order_id TEXT NOT NULL);
        INSERT OR IGNORE INTO order_barcodes(code, order_id)
            SELECT json_extract(b.value, '$.code'), o.id FROM orders o, json_each(o.body, '$.barcodes') b
    """),
    # The retention pass deletes profiles past their TTL oldest first, a chunk at a time: each chunk is a range
    # read of this index, not a scan of every profile ever stored.
    Migration(25, "profiles_by_age", "CREATE INDEX profiles_updated_at ON profiles(updated_at)"),
    # The recommendation features' latest checkpoint (one row): a start restores it and replays only the
    # interactions stored after `covered` instead of the whole log (docs/reco.md, "Checkpoints").
    Migration(26, "reco_checkpoint", """
        CREATE TABLE reco_checkpoint (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            covered INTEGER NOT NULL,
            taken_at REAL NOT NULL,
            body BLOB NOT NULL
        )
    """),
    # A start reads each loyalty member's stored state, not their history (docs/architecture.md, "Inside
    # loyalty"): the state is written in the same transaction as each ledger entry, with its lots' earliest expiry
    # (the expiry pass reads the members due). A member without one (entries from before this migration) is found
    # through the index of members' first entries and replayed once.
    Migration(27, "loyalty_accounts", """
        CREATE TABLE loyalty_accounts (
            user_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            next_expiry REAL,
            body TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX loyalty_accounts_expiry ON loyalty_accounts(next_expiry) WHERE next_expiry IS NOT NULL;
        CREATE INDEX loyalty_ledger_firsts ON loyalty_ledger(user_id) WHERE seq = 1
    """),
    # The card simulator's own record of the payments it took (adapters/payments/simulator.py): a gateway
    # remembers its payments whichever process asks, so a payment left pending by one process (the demo's seed,
    # another node) is settled, not "never seen", when the reconciliation sweep asks about it.
    Migration(28, "card_simulator_payments", """
        CREATE TABLE card_simulator_payments (
            payment_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            reason TEXT,
            at REAL NOT NULL
        ) WITHOUT ROWID
    """),
    # The reward-signal ids campaign reports have counted: a retried signal is logged again, and counted once.
    Migration(29, "report_signals", """
        CREATE TABLE report_signals (
            signal_id TEXT PRIMARY KEY,
            at REAL NOT NULL
        );
        CREATE INDEX report_signals_at ON report_signals(at)
    """),
    # Which campaign owns each DSP line item (platform, cid): written with the campaign, so two nodes sharing a
    # store cannot both give one to different campaigns.
    Migration(30, "campaign_line_items", """
        CREATE TABLE campaign_line_items (
            platform TEXT NOT NULL,
            cid TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            PRIMARY KEY (platform, cid)
        ) WITHOUT ROWID;
        CREATE INDEX campaign_line_items_campaign ON campaign_line_items(campaign_id)
    """),
    # Each write of a campaign names the revision it read: a node whose copy is stale (another node took a step
    # meanwhile) writes nothing, instead of putting the state back or taking the same step twice.
    Migration(31, "campaign_revisions", """
        ALTER TABLE campaigns ADD COLUMN revision INTEGER NOT NULL DEFAULT 0
    """),
    # Work one node does at a time (the syncs with the team's tools): who holds each turn, until when.
    Migration(32, "task_leases", """
        CREATE TABLE task_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            until REAL NOT NULL
        ) WITHOUT ROWID
    """),
    # Each customer's last decision per campaign, for the paid order or click that may follow it within a week:
    # kept in the store, so a restart or another node still credits it.
    Migration(33, "policy_decisions", """
        CREATE TABLE policy_decisions (
            user_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            arm TEXT NOT NULL,
            context TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (user_id, campaign_id)
        ) WITHOUT ROWID;
        CREATE INDEX policy_decisions_at ON policy_decisions(at)
    """),
    # Who made an API key through the API: the key acts for them where it matters who someone is (approvals).
    Migration(34, "api_key_owner", """
        ALTER TABLE api_keys ADD COLUMN created_by TEXT NOT NULL DEFAULT ''
    """),
    # A cabin's capacity beside its seats held, for nodes sharing PostgreSQL (empty here, as the table is).
    Migration(35, "inventory_capacity", """
        ALTER TABLE inventory ADD COLUMN capacity INTEGER
    """),
    # Departed flights are read from the store (a start loads those departing after a horizon; the admin list
    # pages every flight by departure).
    Migration(36, "flights_by_departure", """
        CREATE INDEX flights_departure ON flights(departure_at, id)
    """),
    # The DSPs' own win and billing notices to call, queued with the win (an outbox): due_at is NULL once called
    # (or given up), and the row kept a while so that a repeated notice does not call the DSP again.
    Migration(37, "dsp_forwards", """
        CREATE TABLE dsp_forwards (
            platform TEXT NOT NULL,
            bid_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            url TEXT NOT NULL,
            queued_at REAL NOT NULL,
            due_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (platform, bid_id, kind)
        );
        CREATE INDEX dsp_forwards_due ON dsp_forwards(due_at);
        CREATE INDEX dsp_forwards_queued ON dsp_forwards(queued_at)
    """),
]

EVENTS = [
    Migration(1, "event_log", """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            type TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX events_type_at ON events(type, at);
        CREATE INDEX events_at ON events(at)
    """),
    # Reads ask for one type in id order ("after this id", "the newest N"). An index on (type, at) made
    # SQLite read every row of the type and sort them for each such query; (type) alone holds the rowid
    # in order, so a read is a range scan of what it returns. Nothing read through `at` alone (an
    # `at` filter always comes with an id range). One index instead of two also makes each event's
    # insert cheaper, and the event log writes one for every bid and every offer shown.
    Migration(2, "event_log_type_index", """
        CREATE INDEX events_type ON events(type);
        DROP INDEX events_type_at;
        DROP INDEX events_at
    """),
]
