"""The request ledger (SQLAlchemy) and request parsing."""

from forgetflow.ledger.requests import CSV_COLUMNS, ErasureRequest, make_request, parse_csv, read_csv, to_csv
from forgetflow.ledger.store import STATES, ImportResult, Ledger

__all__ = ["CSV_COLUMNS", "ErasureRequest", "ImportResult", "Ledger", "STATES", "make_request", "parse_csv",
           "read_csv", "to_csv"]
