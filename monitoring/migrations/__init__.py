"""Alembic migrations of the prediction log's and feedback's tables (run by `database.ensure_schema`)."""
