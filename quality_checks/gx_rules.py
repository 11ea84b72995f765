"""Great Expectations 1.x glue: each SQL rule as an `UnexpectedRowsExpectation`.

GX's stock `UnexpectedRowsExpectation` runs its query twice (a COUNT(*) wrapper for the
row_count metric, then the rows themselves, capped at 200) and executes it as `text()`
without parameters, so an "as of" date could only be pasted into the SQL. This module keeps
the stock expectation's contract (a query with `{batch}`; success = no row) and changes two
things, through GX's documented extension points (a metric provider and an expectation
subclass, registered by class definition):

* the query's bound parameters travel as `query_parameters` (a JSON object of ISO dates) and
  are bound with `bindparam(..., type_=Date)`, never formatted into the SQL;
* the query runs once and returns every row (no 200 cap), so the runner stores the flags
  from the validation result without querying again.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, ClassVar

import sqlalchemy as sa
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations import UnexpectedRowsExpectation
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.query_metric_provider import QueryMetricProvider

METRIC_NAME = "kairos_rule.unexpected_rows"


def encode_parameters(parameters: dict[str, dt.date]) -> str:
    """Parameters as a JSON string: metric kwargs must be hashable and serialisable."""
    return json.dumps({k: v.isoformat() for k, v in sorted(parameters.items())})


def _bound(sql: str, encoded: str) -> sa.TextClause:
    values = json.loads(encoded)
    statement = sa.text(sql)
    # Bind only what the query names (`bindparams` rejects unknown names); `\b` so that
    # `:as_of` is not found inside `:as_of_minus_7`.
    used = {k: v for k, v in values.items() if re.search(rf":{re.escape(k)}\b", sql)}
    if used:
        statement = statement.bindparams(
            *(
                sa.bindparam(name, dt.date.fromisoformat(value), type_=sa.Date())
                for name, value in used.items()
            )
        )
    return statement


class KairosRuleRows(QueryMetricProvider):
    """Every row of a rule's query on the batch, with the query's date parameters bound."""

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
        # The rules alias the batch themselves (`{batch} s`, joined to other tables), so the
        # batch is substituted as a bare parenthesised subquery; GX's own substitution adds
        # `AS subselect` whenever it finds no JOIN keyword, which `{batch} s` cannot follow.
        if isinstance(batch_selectable, sa.Table):
            batch = batch_selectable.name
        else:
            compiled = batch_selectable.compile(
                dialect=execution_engine.engine.dialect, compile_kwargs={"literal_binds": True}
            )
            batch = f"({compiled})"
        sql = cls._format_query(query, batch=batch)
        statement = _bound(sql, metric_value_kwargs.get("query_parameters") or "{}")
        result = execution_engine.execute_query(statement)
        return [dict(row._mapping) for row in result.fetchall()]


class ExpectNoKairosRuleRows(UnexpectedRowsExpectation):
    """A rule holds when its query returns no row; the rows are the flags."""

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
        rows: list[dict[str, Any]] = metrics[METRIC_NAME]
        return {
            "success": not rows,
            "result": {"observed_value": len(rows), "details": {"unexpected_rows": rows}},
        }
