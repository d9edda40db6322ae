"""Alembic's environment for the ledger: migrations run on the connection ``schema.upgrade`` hands over.

There is no alembic.ini: ``forgetflow.ledger.schema.upgrade`` builds the configuration, opens the
transaction (under PostgreSQL's advisory lock) and passes its connection in ``config.attributes``.
"""

from alembic import context

from forgetflow.ledger.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
