"""Great Expectations validation of a check run (quality_checks/runner.py, step 3).

An ephemeral GX context (nothing is written to disk, usage statistics off) over the same
database: on `quality_check_result`, one `ExpectNoKairosRuleRows` per rule (the flags the
rule left in this run; success = none; gx_rules.py), whose counts must equal what the run
stored; and column expectations (SIRET format, dictionary codes, dates) on
`kairos_session`, `recruitment_slot`, `kairos_adherent` and `enrolment`, counted without
examples first, examples fetched for the failures only (docs/quality-checks.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.db import read_query
from core.enrolment_status import Status
from quality_checks.rules import Rule

log = logging.getLogger(__name__)

SIRET_REGEX = r"^[0-9]{14}$"
# The expectation accepts exactly the lifecycle's statuses (one source of truth).
ENROLMENT_STATUSES = tuple(status.value for status in Status)


def _as_int(value: object) -> int | None:
    return None if value is None else int(str(value))


@dataclass(frozen=True, slots=True)
class ExpectationOutcome:
    """A GX column expectation's result, summarised (values are codes or SIRETs only)."""

    table: str
    expectation: str
    column: str
    success: bool
    unexpected_count: int | None
    element_count: int | None
    examples: tuple[str, ...] = ()
    error: str | None = None


def _column_expectations(gx: Any) -> dict[str, list[Any]]:
    """Column expectations per table (GX 1.x classes): format, dictionaries, dates."""
    e = gx.expectations
    return {
        "kairos_session": [
            e.ExpectColumnValuesToMatchRegex(column="dispensateur_siret", regex=SIRET_REGEX),
            e.ExpectColumnValuesToMatchRegex(column="mandataire_siret", regex=SIRET_REGEX),
            e.ExpectColumnValuesToNotBeNull(column="carif_session_numero"),
            e.ExpectColumnValuesToBeInSet(column="etat_recrutement", value_set=[1, 2, 3]),
            e.ExpectColumnValuesToBeInSet(column="modalites_entrees_sorties", value_set=[0, 1]),
            e.ExpectColumnValuesToBeInSet(
                column="split_reason",
                value_set=["single", "co_contracting", "guichet_unique", "detached_place"],
            ),
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="fin",
                column_B="debut",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        ],
        "recruitment_slot": [
            e.ExpectColumnValuesToBeInSet(column="origin", value_set=["lheo", "kairos"]),
            e.ExpectColumnValuesToBeInSet(
                column="modality", value_set=["ico", "rdvi", "candidature", "other"]
            ),
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="ends_on",
                column_B="starts_on",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        ],
        "kairos_adherent": [
            e.ExpectColumnValuesToMatchRegex(column="siret", regex=SIRET_REGEX),
        ],
        "enrolment": [
            e.ExpectColumnValuesToBeInSet(
                column="current_status", value_set=list(ENROLMENT_STATUSES)
            ),
            e.ExpectColumnValuesToMatchRegex(column="dispensateur_siret", regex=SIRET_REGEX),
        ],
    }


def _gx() -> Any:
    """Import GX lazily, without its usage statistics (a nightly job phones no one)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    # Some GX modules set their logger to INFO when imported, which bypasses the level of
    # "great_expectations" (WARNING in the Airflow steps): let them inherit it instead.
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.NOTSET)
    return gx


def _outcome(table: str, result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = str(kwargs.get("column") or f"{kwargs.get('column_A')}/{kwargs.get('column_B')}")
    data = dict(result.result or {})
    error = None
    if _errored(result):
        error = "; ".join(
            str(v.get("exception_message"))[:300]
            for v in result.exception_info.values()
            if isinstance(v, dict)
        )
    examples = tuple(str(v) for v in (data.get("partial_unexpected_list") or [])[:5])
    return ExpectationOutcome(
        table=table,
        expectation=str(config.type),
        column=column,
        success=bool(result.success),
        unexpected_count=_as_int(data.get("unexpected_count")),
        element_count=_as_int(data.get("element_count")),
        examples=examples,
        error=error,
    )


# Counts without examples: GX asks for up to `partial_unexpected_count` unexpected values
# per expectation, and a query that looks for examples which do not exist reads the whole
# table (a million rows) to find none. With 0 it answers at once (LIMIT 0); the counts come
# from one aggregate query per table that GX bundles. Examples are fetched afterwards, for
# the expectations that failed only.
COUNTS_ONLY: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
WITH_EXAMPLES: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}


def _new_gx_context(gx: Any) -> Any:
    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # cosmetic only: never fail a run over progress bars
        log.debug("could not disable GX progress bars", exc_info=True)
    return context


def _validate_table(
    gx: Any, batch: Any, table: str, expectations: Sequence[Any], result_format: Any
) -> list[Any]:
    """One GX validation of `expectations` over the whole table; the results, in order."""
    suite = gx.ExpectationSuite(name=f"kairos_{table}")
    for expectation in expectations:
        suite.add_expectation(expectation)
    return list(batch.validate(suite, result_format=result_format).results)


def validate_run(
    url: str, check_run_id: int, rules: Sequence[Rule]
) -> tuple[dict[str, int], list[ExpectationOutcome]]:
    """Validate the database with GX: per rule, the flags it left in the run (success = none),
    and the column expectations of every table. Returns (flags per rule id, outcomes)."""
    from quality_checks import gx_rules

    gx = _gx()
    context = _new_gx_context(gx)
    datasource = context.data_sources.add_sql(name="kairos", connection_string=url)
    rule_query = read_query("queries/quality_rule_flags.sql")
    rule_expectations = [
        gx_rules.ExpectNoKairosRuleRows(
            unexpected_rows_query=rule_query,
            query_parameters=gx_rules.encode_parameters(
                {"check_run_id": check_run_id, "rule_id": rule.id}
            ),
            rule_id=rule.id,
            description=rule.title,
        )
        for rule in rules
    ]
    batches = {
        table: datasource.add_table_asset(name=table, table_name=table)
        .add_batch_definition_whole_table(f"{table}_all")
        .get_batch()
        for table in ("quality_check_result", *_column_expectations(gx))
    }
    counts: dict[str, int] = {}
    for result in _validate_table(
        gx, batches["quality_check_result"], "quality_check_result", rule_expectations, "SUMMARY"
    ):
        rule_id = str(result.expectation_config.kwargs.get("rule_id"))
        _raise_on_exception(rule_id, result)
        counts[rule_id] = int((result.result or {}).get("observed_value") or 0)
    missing = {r.id for r in rules} - set(counts)
    if missing:
        raise RuntimeError(f"GX returned no result for rules {sorted(missing)}")
    outcomes: list[ExpectationOutcome] = []
    for table, expectations in _column_expectations(gx).items():
        results = _validate_table(gx, batches[table], table, expectations, COUNTS_ONLY)
        failed = [i for i, r in enumerate(results) if not r.success and not _errored(r)]
        if failed:
            # Second pass, failures only (fresh expectation objects): a few unexpected values.
            fresh = _column_expectations(gx)[table]
            again = _validate_table(
                gx, batches[table], table, [fresh[i] for i in failed], WITH_EXAMPLES
            )
            for index, result in zip(failed, again, strict=True):
                results[index] = result
        outcomes.extend(_outcome(table, result) for result in results)
    return counts, outcomes


def _errored(result: Any) -> bool:
    return bool(
        result.exception_info
        and any(
            isinstance(v, dict) and v.get("raised_exception")
            for v in result.exception_info.values()
        )
    )


def _raise_on_exception(rule_id: str, result: Any) -> None:
    """A rule that could not run must fail the check run, not pass silently."""
    for info in (result.exception_info or {}).values():
        if isinstance(info, dict) and info.get("raised_exception"):
            raise RuntimeError(f"rule {rule_id} failed: {info.get('exception_message')}")
    if result.exception_info and result.exception_info.get("raised_exception"):
        raise RuntimeError(
            f"rule {rule_id} failed: {result.exception_info.get('exception_message')}"
        )
