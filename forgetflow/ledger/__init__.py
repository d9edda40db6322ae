"""The request ledger (SQLAlchemy) and request parsing.

``Ledger`` (store.py) is the one door to the database; behind it: schema.py (tables, one engine per URL,
Alembic migrations), request_rows.py (the queue), batch_rows.py (the batch lock as a lease, batches,
journals), history_rows.py (dataset versions, alias moves, receipt rows, quality, superseded models) and
lease.py (the lease's heartbeat). requests.py parses and validates requests before anything is stored.
"""

from forgetflow.ledger.requests import CSV_COLUMNS, ErasureRequest, make_request, parse_csv, read_csv, to_csv
from forgetflow.ledger.store import STATES, ImportResult, Ledger

__all__ = ["CSV_COLUMNS", "ErasureRequest", "ImportResult", "Ledger", "STATES", "make_request", "parse_csv",
           "read_csv", "to_csv"]
