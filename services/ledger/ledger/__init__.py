"""Ledger: the double-entry book of record for cash and securities."""
