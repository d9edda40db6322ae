"""Alembic migrations of the ledger's schema (run by ``forgetflow.ledger.schema.upgrade``)."""
