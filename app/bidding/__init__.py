"""Real-time bidding: OpenRTB 2.6 models, campaigns, the BidProcessor pipeline, notices."""
