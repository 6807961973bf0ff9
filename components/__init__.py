"""Ticketflow's pipeline steps: plain, typed logic, one module per stage (ingest → … → register)."""
