"""Great Expectations 1.x glue: each rule's outcome as an `UnexpectedRowsExpectation`.

The rules themselves run set-based in the database (quality_checks/runner.py stores each
rule's flags with one `INSERT … SELECT`); GX then validates the check run: one
`ExpectNoKairosRuleRows` per rule, whose query selects the flags that rule left in this run
(sql/queries/quality_rule_flags.sql), success = no row.

GX's stock `UnexpectedRowsExpectation` executes its query as `text()` without parameters,
so a run id or an "as of" date could only be pasted into the SQL. This module keeps the
stock expectation's contract (a query with `{batch}`; success = no row; observed value =
the row count; a sample of rows in the details) and changes one thing through GX's
documented extension points (a metric provider and an expectation subclass, registered by
class definition): the query's parameters travel as `query_parameters` (JSON) and are bound,
never formatted into the SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import sqlalchemy as sa
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations import UnexpectedRowsExpectation
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.query_metric_provider import QueryMetricProvider

from quality_checks.rules import bound

METRIC_NAME = "kairos_rule.unexpected_rows"
SAMPLE_ROWS = 20  # rows kept in the validation result; the flags themselves are in the table


def encode_parameters(parameters: Mapping[str, object]) -> str:
    """Parameters as a JSON string (metric kwargs must be hashable and serialisable);
    dates are tagged so that they are bound as dates again."""
    encoded: dict[str, list[object]] = {}
    for name, value in sorted(parameters.items()):
        if isinstance(value, dt.date):
            encoded[name] = ["date", value.isoformat()]
        elif isinstance(value, bool | int | str) or value is None:
            encoded[name] = ["value", value]
        else:
            raise TypeError(f"parameter {name}: cannot bind a {type(value).__name__}")
    return json.dumps(encoded)


def decode_parameters(encoded: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, (kind, value) in json.loads(encoded).items():
        values[name] = dt.date.fromisoformat(value) if kind == "date" else value
    return values


class KairosRuleRows(QueryMetricProvider):
    """Row count and a sample of a query on the batch, with its parameters bound."""

    metric_name = METRIC_NAME
    value_keys = ("unexpected_rows_query", "query_parameters")
    query_param_name: ClassVar[str] = "unexpected_rows_query"

    @metric_value(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(  # type: ignore[no-untyped-def]  # GX's decorator erases the signature
        cls,
        execution_engine: SqlAlchemyExecutionEngine,
        metric_domain_kwargs: dict[str, Any],
        metric_value_kwargs: dict[str, Any],
        metrics: dict[str, Any],
        runtime_configuration: dict[str, Any],
    ):
        batch_selectable, _, _ = execution_engine.get_compute_domain(
            metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        query = cls._get_query_from_metric_value_kwargs(metric_value_kwargs)
        # The batch is substituted as a table name or a bare parenthesised subquery; GX's
        # own substitution adds `AS subselect` whenever it finds no JOIN keyword.
        if isinstance(batch_selectable, sa.Table):
            batch = batch_selectable.name
        else:
            compiled = batch_selectable.compile(
                dialect=execution_engine.engine.dialect, compile_kwargs={"literal_binds": True}
            )
            batch = f"({compiled})"
        sql = cls._format_query(query, batch=batch)
        parameters = decode_parameters(metric_value_kwargs.get("query_parameters") or "{}")
        # Wrapped with SQLAlchemy constructs, not by pasting the query into more SQL text.
        rows = bound(sql, parameters).columns().subquery("rule_rows")
        count = execution_engine.execute_query(
            sa.select(sa.func.count()).select_from(rows)
        ).scalar_one()
        sample = execution_engine.execute_query(
            sa.select(sa.text("*")).select_from(rows).limit(SAMPLE_ROWS)
        ).fetchall()
        return {"count": int(count), "sample": [dict(row._mapping) for row in sample]}


class ExpectNoKairosRuleRows(UnexpectedRowsExpectation):
    """A rule holds when it left no flag in the check run."""

    query_parameters: str = "{}"
    rule_id: str = ""

    metric_dependencies: ClassVar[tuple[str, ...]] = (METRIC_NAME,)
    success_keys: ClassVar[tuple[str, ...]] = ("unexpected_rows_query", "query_parameters")

    def _validate(
        self,
        metrics: dict[str, Any],
        runtime_configuration: dict[str, Any] | None = None,
        execution_engine: Any = None,
    ) -> dict[str, Any]:
        found: dict[str, Any] = metrics[METRIC_NAME]
        return {
            "success": found["count"] == 0,
            "result": {
                "observed_value": found["count"],
                "details": {"unexpected_rows": found["sample"]},
            },
        }
