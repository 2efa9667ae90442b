"""Training the bid scorer from logged bids and clicks: pure numpy, run by the caller in a worker thread."""
