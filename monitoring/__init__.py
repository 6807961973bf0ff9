"""Monitoring of the served model: the prediction log and drift checks."""
