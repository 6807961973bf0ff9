"""Alembic's entry point: runs the migrations on the connection `database.ensure_schema` hands over.

ticketflow never runs Alembic from its command line: `ensure_schema` opens a transaction (holding the migration
lock), puts its connection in `config.attributes["connection"]` and calls `alembic.command.upgrade`. Alembic then
runs inside that transaction, so the upgrade is all or nothing.
"""

from alembic import context

from ticketflow.monitoring.database import VERSION_TABLE, metadata


def run_migrations() -> None:
    """Runs the pending migrations on the connection `ensure_schema` put in the config's attributes."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through ticketflow.monitoring.database.ensure_schema, not alembic's CLI")
    context.configure(
        connection=connection, target_metadata=metadata, version_table=VERSION_TABLE, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic runs this file with its context set up; a plain import (the import tests) only defines the function.
if hasattr(context, "config"):
    run_migrations()
