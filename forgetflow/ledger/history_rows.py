"""The ledger's history: dataset versions, alias moves, receipt rows, quality measures, superseded models.

Rows are appended by batches, audits and promotions; a batch that is rolled back deletes the rows it
appended (``delete_*`` by batch id). Receipt rows are written only with a batch's completion
(``batch_rows.finish``) and never deleted.
"""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import and_, insert, select
from sqlalchemy.engine import Engine

from forgetflow.ledger.schema import (
    alias_moves_t,
    as_dict,
    quality_t,
    receipts_t,
    superseded_t,
    utcnow,
    versions_t,
)


# ---- dataset versions ---------------------------------------------------------------------------
def record_version(engine: Engine, row: dict[str, Any]) -> None:
    """Record a dataset version once (a second record of the same version is ignored)."""
    with engine.begin() as conn:
        exists = conn.execute(select(versions_t.c.version).where(and_(
            versions_t.c.dataset == row["dataset"], versions_t.c.version == row["version"]))).first()
        if exists is None:
            conn.execute(insert(versions_t).values(**row))


def versions(engine: Engine, dataset: str | None = None) -> list[dict[str, Any]]:
    query = select(versions_t).order_by(versions_t.c.dataset, versions_t.c.version)
    if dataset:
        query = query.where(versions_t.c.dataset == dataset)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# ---- alias moves --------------------------------------------------------------------------------
def record_alias_move(engine: Engine, model_name: str, alias: str, from_version: str | None,
                      to_version: str | None, reason: str, actor: str, batch_id: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(insert(alias_moves_t).values(model_name=model_name, alias=alias, from_version=from_version,
                                                  to_version=to_version, at=utcnow(), reason=reason,
                                                  actor=actor, batch_id=batch_id))


def alias_history(engine: Engine, model_name: str | None = None) -> list[dict[str, Any]]:
    return _rows_of_model(engine, alias_moves_t, model_name)


def _rows_of_model(engine: Engine, table: Any, model_name: str | None) -> list[dict[str, Any]]:
    """Every row of ``table`` in insertion order, only ``model_name``'s when given."""
    query = select(table).order_by(table.c.id)
    if model_name:
        query = query.where(table.c.model_name == model_name)
    with engine.connect() as conn:
        return [as_dict(r) for r in conn.execute(query).mappings()]


def delete_alias_moves(engine: Engine, batch_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(alias_moves_t.delete().where(alias_moves_t.c.batch_id == batch_id))


# ---- receipts -----------------------------------------------------------------------------------
def receipts(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(receipts_t).order_by(receipts_t.c.seq)).mappings()]


def receipt_of(engine: Engine, request_id: str) -> dict[str, Any] | None:
    """The ledger row of a request's receipt (the latest, should a request ever get two), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(receipts_t).where(receipts_t.c.request_id == request_id)
                           .order_by(receipts_t.c.seq.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def last_receipt(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(receipts_t).order_by(receipts_t.c.seq.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


# ---- quality ------------------------------------------------------------------------------------
def record_quality(engine: Engine, batch_id: str | None, model_version: str | None,
                   metrics: dict[str, float]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(quality_t), [{"batch_id": batch_id, "model_version": model_version, "metric": k,
                                          "value": float(v), "at": now} for k, v in metrics.items()])


def quality(engine: Engine, metric: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [as_dict(r) for r in conn.execute(select(quality_t).where(quality_t.c.metric == metric)
                                                 .order_by(quality_t.c.id)).mappings()]


def delete_quality(engine: Engine, batch_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(quality_t.delete().where(quality_t.c.batch_id == batch_id))


# ---- superseded models --------------------------------------------------------------------------
def record_superseded(engine: Engine, model_name: str, rows: Sequence[dict[str, Any]], recorded_in: str | None) -> None:
    if not rows:
        return
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(superseded_t), [{"model_name": model_name, "version": str(r["version"]),
                                             "erased_by_batch": r["erased_by_batch"], "recorded_in": recorded_in,
                                             "at": now, "reason": r["reason"]} for r in rows])


def superseded(engine: Engine, model_name: str | None = None) -> list[dict[str, Any]]:
    return _rows_of_model(engine, superseded_t, model_name)


def delete_superseded(engine: Engine, recorded_in: str) -> None:
    with engine.begin() as conn:
        conn.execute(superseded_t.delete().where(superseded_t.c.recorded_in == recorded_in))
