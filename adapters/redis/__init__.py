"""Redis for what several nodes share hot: campaign budgets and their reservations, frequency caps, the issued-bid
ledger (so any node accepts a notice) and rate-limit buckets. The system of record stays in SQL; Redis holds
counters that a node re-seeds from it if Redis comes back empty."""
