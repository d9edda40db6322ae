"""Great Expectations adapter: the data contract (forgetflow.data.contracts) run as real GX suites.

The only module that imports ``great_expectations`` (lazily: its import costs ~3 s). One ephemeral context
per process; one suite per frame (dataset table, shards, manifest, class balance), built from the rules in
code, never from a hand-edited gx/ folder. Failing manifest rows become quarantine reasons per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from forgetflow.data.contracts import Rule, balance_frame, describe_failure, manifest_frame, rules, shard_frame
from forgetflow.data.manifest import Manifest
from forgetflow.data.version import DatasetVersion

log = logging.getLogger(__name__)
_CONTEXT: Any = None
_INDEX_COLUMNS = {"dataset": ["sample_id"], "manifest": ["request_id", "sample_id"], "shards": ["shard"], "balance": ["label"]}


@dataclass
class ValidationOutcome:
    """What validation found: per-request quarantine reasons, blocking problems, warnings, the GX results."""

    success: bool
    quarantine: dict[str, str] = field(default_factory=dict)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)  # frame -> GX result (JSON-able)
    statistics: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The JSON document kept with the run."""
        return {"success": self.success, "quarantine": self.quarantine, "blocking": self.blocking,
                "warnings": self.warnings, "statistics": self.statistics, "gx_results": self.results}


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _CONTEXT = gx.get_context(mode="ephemeral")
        _CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return _CONTEXT


def _expectation(rule: Rule) -> Any:
    import great_expectations.expectations as gxe

    cls = getattr(gxe, rule.expectation)
    return cls(**rule.kwargs, meta={"rule": rule.name, "severity": rule.severity})


def run_suite(frame_name: str, frame: pd.DataFrame, frame_rules: list[Rule]) -> tuple[Any, list[tuple[Rule, list[dict]]]]:
    """Validate ``frame`` with a GX suite built from ``frame_rules``; return the result and failures per rule."""
    import great_expectations as gx

    ctx = _context()
    suffix = f"{frame_name}-{id(frame)}"
    source = ctx.data_sources.add_pandas(f"ff-{suffix}")
    asset = source.add_dataframe_asset(name=frame_name)
    batch_definition = asset.add_batch_definition_whole_dataframe(f"{frame_name}-all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"forgetflow-{suffix}"))
    by_name = {}
    for rule in frame_rules:
        suite.add_expectation(_expectation(rule))
        by_name[rule.name] = rule
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(data=batch_definition, suite=suite, name=f"validate-{suffix}"))
    index_columns = [c for c in _INDEX_COLUMNS[frame_name] if c in frame.columns]
    try:
        result = definition.run(batch_parameters={"dataframe": frame},
                                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns})
    finally:
        ctx.validation_definitions.delete(definition.name)
        ctx.suites.delete(suite.name)
        ctx.data_sources.delete(source.name)
    failures = []
    for item in result.results:
        if item.success:
            continue
        rule = by_name[item.expectation_config.meta["rule"]]
        failures.append((rule, _failing_rows(frame, item.result, index_columns)))
    return result, failures


def _failing_rows(frame: pd.DataFrame, result: dict[str, Any], index_columns: list[str]) -> list[dict[str, Any]]:
    """The full frame rows GX reported as unexpected (matched back by the index columns)."""
    found = result.get("unexpected_index_list") or []
    if not found:
        return []
    if isinstance(found[0], dict):
        wanted = {tuple(_norm(d.get(c)) for c in index_columns) for d in found}
        keys = [tuple(_norm(v) for v in row) for row in frame[index_columns].itertuples(index=False)]
        return frame[[k in wanted for k in keys]].to_dict(orient="records")
    return frame.loc[[i for i in found if i in frame.index]].to_dict(orient="records")


def _norm(value: Any) -> Any:
    """None for every flavour of missing (None, NaN, pd.NA), so keys from GX and pandas compare equal."""
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


def validate(version: DatasetVersion, manifest: Manifest, max_class_shift: float = 5.0) -> ValidationOutcome:
    """Run the whole contract on a version and a manifest."""
    all_rules = rules(version, max_class_shift)
    frames = {
        "dataset": version.table,
        "shards": shard_frame(version),
        "manifest": manifest_frame(version, manifest),
    }
    outcome = ValidationOutcome(success=True)
    for name, frame in frames.items():
        result, failures = run_suite(name, frame, [r for r in all_rules if r.frame == name])
        outcome.results[name] = result.to_json_dict()
        outcome.statistics[name] = dict(result.statistics)
        for rule, rows in failures:
            if name == "manifest":
                for row in rows or [{}]:
                    rid = row.get("request_id")
                    if rid is not None and rid not in outcome.quarantine:
                        outcome.quarantine[str(rid)] = f"{rule.name}: {describe_failure(rule, row)}"
            elif rule.severity == "critical":
                detail = describe_failure(rule, rows[0]) if rows else rule.message
                outcome.blocking.append(f"{name} {rule.name}: {detail}" + (f" (+{len(rows) - 1} more)" if len(rows) > 1 else ""))
    if outcome.blocking:  # the data itself is broken: nothing more to learn from a balance check
        outcome.success = False
        return outcome
    # class balance of what would remain once every non-quarantined request is honoured (warnings only)
    forget_ids = manifest.with_exclusions(outcome.quarantine).forget_ids()
    result, failures = run_suite("balance", balance_frame(version, forget_ids), [r for r in all_rules if r.frame == "balance"])
    outcome.results["balance"] = result.to_json_dict()
    for rule, rows in failures:
        outcome.warnings.extend(f"{rule.name}: {describe_failure(rule, row)}" for row in rows)
    outcome.success = not outcome.blocking and not outcome.quarantine
    return outcome
