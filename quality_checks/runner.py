"""Run the quality rules through Great Expectations and store every flag.

One call of `run_checks` = one check run:

1. a `run_ledger` row (run_kind 'quality_check') and a `quality_check_run` row, committed at
   once so a failed run stays visible;
2. an ephemeral GX context (nothing written to disk) on the database URL, with one suite per
   table: on `kairos_session`, one `ExpectNoKairosRuleRows` (an `UnexpectedRowsExpectation`,
   see gx_rules.py) per rule of rules.yaml, plus column expectations (SIRET format,
   dictionary codes, dates); column expectations on `recruitment_slot`, `kairos_adherent` and
   `enrolment`;
3. the rows each rule returned (fetched once, by GX) become `quality_check_result` rows with
   their French message; headline figures and per-rule counts go on the run row.

Scope: every source, or one (`source=`): the rules always read the whole database (they are
set-based and cheap), the flags and figures stored are those of the scope.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, text

from pipelines.db import get_engine, migrate
from pipelines.history import (
    db_timestamp,
    fail_run,
    finish_run,
    mark_interrupted_runs,
    run_lock,
    start_run,
    utcnow,
)
from pipelines.kairos_exports.lifecycle import Status
from quality_checks.rules import (
    HEADLINE_RULE,
    SEVERITY_ORDER,
    Rule,
    bind_parameters,
    load_rules,
    read_query,
)

log = logging.getLogger(__name__)

RUN_KIND = "quality_check"
SIRET_REGEX = r"^[0-9]{14}$"
# The expectation accepts exactly the lifecycle's statuses (one source of truth).
ENROLMENT_STATUSES = tuple(status.value for status in Status)
_INSERT_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Flag:
    """One row flagged by one rule: what the check-result table stores."""

    rule_id: str
    severity: str
    as_of: dt.date
    kairos_session_id: int | None
    source: str | None
    carif_formation_numero: str | None
    carif_action_numero: str | None
    carif_session_numero: str | None
    dispensateur_siret: str | None
    mandataire_siret: str | None
    departement: str | None
    detail_key: str
    detail_count: int | None
    detail_date: dt.date | None
    message: str

    @property
    def flag_key(self) -> str:
        """Identity across runs: the same problem on the same session keeps its key."""
        return "|".join(
            (
                self.rule_id,
                self.source or "",
                self.carif_session_numero or "",
                self.dispensateur_siret or "",
                self.detail_key,
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The `kairos-sync check --format json` object."""
        return {
            "rule": self.rule_id,
            "severity": self.severity,
            "as_of": self.as_of.isoformat(),
            "source": self.source,
            "carif_formation": self.carif_formation_numero,
            "carif_action": self.carif_action_numero,
            "carif_session": self.carif_session_numero,
            "dispensateur_siret": self.dispensateur_siret,
            "mandataire_siret": self.mandataire_siret,
            "departement": self.departement,
            "detail": self.detail_key,
            "count": self.detail_count,
            "date": self.detail_date.isoformat() if self.detail_date else None,
            "message": self.message,
        }


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


@dataclass(slots=True)
class CheckRun:
    """What one check run found."""

    id: int
    run_ledger_id: int
    as_of: dt.date
    source: str | None
    flags: list[Flag]
    expectations: list[ExpectationOutcome]
    sessions_current: int
    sessions_recruiting: int
    sessions_blocked: int
    seconds: float
    rule_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "rules": self.rule_counts,
            "expectations": [asdict(e) for e in self.expectations],
            "seconds": round(self.seconds, 3),
        }


def _as_date(value: object) -> dt.date | None:
    """Dates come back as `date` from PostgreSQL and as ISO text from SQLite."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _as_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def flags_from_rows(
    rule: Rule, rows: Iterable[Mapping[str, Any]], as_of: dt.date, source: str | None
) -> list[Flag]:
    """Flags of one rule's rows, in the scope, merged per flag_key (counts add up)."""
    merged: dict[str, Flag] = {}
    for row in rows:
        if source is not None and row.get("source") != source:
            continue
        flag = Flag(
            rule_id=rule.id,
            severity=rule.severity,
            as_of=as_of,
            kairos_session_id=_as_int(row.get("kairos_session_id")),
            source=_text(row.get("source")),
            carif_formation_numero=_text(row.get("carif_formation_numero")),
            carif_action_numero=_text(row.get("carif_action_numero")),
            carif_session_numero=_text(row.get("carif_session_numero")),
            dispensateur_siret=_text(row.get("dispensateur_siret")),
            mandataire_siret=_text(row.get("mandataire_siret")),
            departement=_text(row.get("departement")),
            detail_key=str(row.get("detail_key") or ""),
            detail_count=_as_int(row.get("detail_count")),
            detail_date=_as_date(row.get("detail_date")),
            message=rule.full_message(row),
        )
        previous = merged.get(flag.flag_key)
        if previous is not None:
            # The same slot key under two origins (LHEO and KAIROS): one problem, counts add.
            total = (previous.detail_count or 0) + (flag.detail_count or 0)
            message = rule.full_message({**row, "detail_count": total})
            flag = replace(previous, detail_count=total, message=message)
        merged[flag.flag_key] = flag
    return list(merged.values())


def _flag_fields(flag: Flag) -> dict[str, Any]:
    return {name: getattr(flag, name) for name in Flag.__slots__}


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

    return gx


def _outcome(table: str, result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = str(kwargs.get("column") or f"{kwargs.get('column_A')}/{kwargs.get('column_B')}")
    data = dict(result.result or {})
    error = None
    if result.exception_info and any(
        isinstance(v, dict) and v.get("raised_exception") for v in result.exception_info.values()
    ):
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


def evaluate(
    url: str, as_of: dt.date, rules: Sequence[Rule] | None = None
) -> tuple[dict[str, list[dict[str, Any]]], list[ExpectationOutcome]]:
    """Validate the database with GX: rows per rule id, and the column expectations."""
    from quality_checks import gx_rules

    gx = _gx()
    rules = list(rules) if rules is not None else list(load_rules())
    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # cosmetic only: never fail a run over progress bars
        log.debug("could not disable GX progress bars", exc_info=True)
    datasource = context.data_sources.add_sql(name="kairos", connection_string=url)
    parameters = gx_rules.encode_parameters(bind_parameters(as_of))
    rows: dict[str, list[dict[str, Any]]] = {}
    outcomes: list[ExpectationOutcome] = []
    for table, expectations in _column_expectations(gx).items():
        asset = datasource.add_table_asset(name=table, table_name=table)
        batch = asset.add_batch_definition_whole_table(f"{table}_all").get_batch()
        suite = gx.ExpectationSuite(name=f"kairos_{table}")
        if table == "kairos_session":
            for rule in rules:
                suite.add_expectation(
                    gx_rules.ExpectNoKairosRuleRows(
                        unexpected_rows_query=rule.sql(),
                        query_parameters=parameters,
                        rule_id=rule.id,
                        description=rule.title,
                    )
                )
        for expectation in expectations:
            suite.add_expectation(expectation)
        # SUMMARY keeps GX from fetching every unexpected value of the column expectations;
        # our rule expectation returns its rows at any result format.
        validation = batch.validate(suite, result_format="SUMMARY")
        for result in validation.results:
            kwargs = result.expectation_config.kwargs
            rule_id = kwargs.get("rule_id")
            if rule_id:
                _raise_on_exception(rule_id, result)
                details = (result.result or {}).get("details") or {}
                rows[str(rule_id)] = list(details.get("unexpected_rows") or [])
            else:
                outcomes.append(_outcome(table, result))
    missing = {r.id for r in rules} - set(rows)
    if missing:
        raise RuntimeError(f"GX returned no result for rules {sorted(missing)}")
    return rows, outcomes


def _raise_on_exception(rule_id: str, result: Any) -> None:
    """A rule that could not run must fail the check run, not pass silently."""
    for info in (result.exception_info or {}).values():
        if isinstance(info, dict) and info.get("raised_exception"):
            raise RuntimeError(f"rule {rule_id} failed: {info.get('exception_message')}")
    if result.exception_info and result.exception_info.get("raised_exception"):
        raise RuntimeError(
            f"rule {rule_id} failed: {result.exception_info.get('exception_message')}"
        )


def headline(conn: Connection, as_of: dt.date, source: str | None) -> tuple[int, int]:
    """(sessions synchronised, sessions recruiting) of the scope on `as_of`."""
    row = conn.execute(
        text(read_query("queries/quality_headline.sql")),
        {"as_of": as_of, "scope": source or ""},
    ).one()
    return int(row.sessions_current or 0), int(row.sessions_recruiting or 0)


def store_flags(conn: Connection, check_run_id: int, flags: Sequence[Flag]) -> None:
    """Insert the flags of a run in chunks (executemany)."""
    target = sa.table(
        "quality_check_result",
        *(sa.column(name) for name in (*Flag.__slots__, "check_run_id", "flag_key")),
    )
    rows = [
        {**_flag_fields(f), "check_run_id": check_run_id, "flag_key": f.flag_key} for f in flags
    ]
    for start in range(0, len(rows), _INSERT_CHUNK):
        conn.execute(sa.insert(target), rows[start : start + _INSERT_CHUNK])


def run_checks(
    url: str | None,
    as_of: dt.date,
    *,
    source: str | None = None,
    rules: Sequence[Rule] | None = None,
    lock_timeout: float = 600.0,
) -> CheckRun:
    """Evaluate every rule as of `as_of`, store the flags; returns the run.

    Check runs of one scope (a source, or all) are serialised like loads; holding the lock,
    a run marks any other `running` check of that scope as interrupted (a killed process
    cannot record its own end; its writes were rolled back by the database).
    """
    engine: Engine = get_engine(url)
    migrate(engine)
    with run_lock(engine, run_kind=RUN_KIND, source=source or "*", timeout=lock_timeout):
        return _run_checks_locked(engine, as_of, source=source, rules=rules)


def _run_checks_locked(
    engine: Engine, as_of: dt.date, *, source: str | None, rules: Sequence[Rule] | None
) -> CheckRun:
    started = time.perf_counter()
    gx_url = engine.url.render_as_string(hide_password=False)
    ledger_id = start_run(engine, run_kind=RUN_KIND, source=source)
    interrupted = mark_interrupted_runs(
        engine, run_kind=RUN_KIND, source=source, current_run_id=ledger_id
    )
    with engine.begin() as conn:
        for stale in interrupted:
            conn.execute(
                text(
                    "UPDATE quality_check_run SET status = 'failed', finished_at = :now "
                    "WHERE run_ledger_id = :ledger AND status = 'running'"
                ),
                {"now": db_timestamp(conn, utcnow()), "ledger": stale},
            )
        check_run_id = int(
            conn.execute(
                text(
                    "INSERT INTO quality_check_run (run_ledger_id, source, as_of, started_at, "
                    "status) VALUES (:ledger, :source, :as_of, :now, 'running') RETURNING id"
                ),
                {
                    "ledger": ledger_id,
                    "source": source,
                    "as_of": as_of,
                    "now": db_timestamp(conn, utcnow()),
                },
            ).scalar_one()
        )
    try:
        rows, outcomes = evaluate(gx_url, as_of, rules)
        by_id = {rule.id: rule for rule in (rules or load_rules())}
        flags: list[Flag] = []
        for rule_id, rule_rows in rows.items():
            flags.extend(flags_from_rows(by_id[rule_id], rule_rows, as_of, source))
        flags.sort(
            key=lambda f: (
                SEVERITY_ORDER[f.severity],
                f.rule_id,
                f.dispensateur_siret or "",
                f.carif_session_numero or "",
                f.detail_key,
            )
        )
        rule_counts = {rule_id: 0 for rule_id in by_id}
        for flag in flags:
            rule_counts[flag.rule_id] += 1
        blocked = len({f.kairos_session_id for f in flags if f.rule_id == HEADLINE_RULE})
        with engine.begin() as conn:
            current, recruiting = headline(conn, as_of, source)
            store_flags(conn, check_run_id, flags)
            run = CheckRun(
                id=check_run_id,
                run_ledger_id=ledger_id,
                as_of=as_of,
                source=source,
                flags=flags,
                expectations=outcomes,
                sessions_current=current,
                sessions_recruiting=recruiting,
                sessions_blocked=blocked,
                seconds=time.perf_counter() - started,
                rule_counts=rule_counts,
            )
            conn.execute(
                text(
                    "UPDATE quality_check_run SET status = 'succeeded', finished_at = :now, "
                    "sessions_current = :current, sessions_recruiting = :recruiting, "
                    "sessions_blocked = :blocked, flags_total = :total, summary_json = :summary "
                    "WHERE id = :id"
                ),
                {
                    "now": db_timestamp(conn, utcnow()),
                    "current": current,
                    "recruiting": recruiting,
                    "blocked": blocked,
                    "total": len(flags),
                    "summary": json.dumps(run.summary(), ensure_ascii=False, sort_keys=True),
                    "id": check_run_id,
                },
            )
            finish_run(
                conn,
                ledger_id,
                status="succeeded",
                counts={},
                extra_counts={"check_run_id": check_run_id, "flags": len(flags), **rule_counts},
            )
    except Exception as exc:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE quality_check_run SET status = 'failed', finished_at = :now "
                    "WHERE id = :id"
                ),
                {"now": db_timestamp(conn, utcnow()), "id": check_run_id},
            )
        fail_run(engine, ledger_id, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        engine.dispose()
    log.info(
        "quality check run %s as of %s: %s flags in %.1f s",
        check_run_id,
        as_of,
        len(flags),
        run.seconds,
    )
    return run
