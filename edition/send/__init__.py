"""How it leaves: delivery targets, the exactly-once send ledger, DKIM."""
