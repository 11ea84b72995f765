"""Run the quality rules, store every flag set-based, and validate the run with GX.

One call of `run_checks` = one check run:

1. a `run_ledger` row (run_kind 'quality_check') and a `quality_check_run` row, committed at
   once so a failed run stays visible;
2. each rule of rules.yaml runs once, inside the database: `INSERT … SELECT` of its query
   (sql/checks/<rule>.sql) into `quality_check_result` (sql/queries/quality_flag_rows.sql),
   on one connection per core on PostgreSQL (`store_flags`; SQLite: one transaction). The
   flags never travel through Python: a million of them cost what the rules' SQL costs
   (docs/performance.md). Messages are rendered when flags are read;
3. an ephemeral GX context validates the run (quality_checks/gx_validation.py): one
   expectation per rule over the flags it stored, whose counts must equal what was stored,
   and column expectations on the loaded tables;
4. headline figures, per-rule counts, per-rule and per-stage seconds go on the run row. A failed run
   deletes its flags and says so in the ledger.

Scope: every source, or one (`source=`): the rules always read the whole database, the
flags and figures stored are those of the scope.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from core import settings
from core.db import get_engine, read_query, require_current_schema
from core.history import (
    RunLock,
    db_timestamp,
    fail_run,
    finish_run,
    mark_interrupted_runs,
    run_lock,
    start_run,
    utcnow,
)
from quality_checks.gx_validation import ExpectationOutcome, validate_run
from quality_checks.rules import (
    HEADLINE_RULE,
    SEVERITY_ORDER,
    CheckSettings,
    Rule,
    bind_parameters,
    bound,
    load_rules,
    render_message,
)

log = logging.getLogger(__name__)

RUN_KIND = "quality_check"


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


@dataclass
class CheckRun:
    """What one check run found. The flags stay in the database (there can be a million):
    `iter_flags()` streams them, `flags` reads them all once (tests, small databases)."""

    id: int
    run_ledger_id: int
    as_of: dt.date
    source: str | None
    expectations: list[ExpectationOutcome]
    sessions_current: int
    sessions_recruiting: int
    sessions_blocked: int
    seconds: float
    # Recruiting, no open modality in the offer, KAIROS not checked recently (the headline
    # rule's `kairos_not_checked` flags): not counted as blocked.
    sessions_unverified: int = 0
    rule_counts: dict[str, int] = field(default_factory=dict)
    url: str = field(default="", repr=False)  # carries the password: never shown
    _flags: list[Flag] | None = field(default=None, repr=False)

    @property
    def flags_total(self) -> int:
        return sum(self.rule_counts.values())

    def iter_flags(self) -> Iterator[Flag]:
        """The run's flags in report order (rule, dispensateur, session, detail), streamed."""
        return iter_flags(self.url, self.id)

    @property
    def flags(self) -> list[Flag]:
        """Every flag, most severe first (all in memory: for small runs and tests)."""
        if self._flags is None:
            self._flags = sorted(
                self.iter_flags(), key=lambda f: (SEVERITY_ORDER[f.severity], f.rule_id)
            )
        return self._flags

    def summary(self) -> dict[str, Any]:
        return {
            "rules": self.rule_counts,
            "expectations": [asdict(e) for e in self.expectations],
            "seconds": round(self.seconds, 3),
        }


class CheckRunNotFound(LookupError):
    """A check run id that names no succeeded run of the expected scope."""


def stored_check_run(
    url: str | None, check_run_id: int, *, source: str | None = None, as_of: dt.date | None = None
) -> CheckRun:
    """A check run already stored (its flags and figures as they were), to report it again
    without evaluating the rules: the report of a night is the check run that night stored.
    Refused (CheckRunNotFound) when it is not a succeeded run of `source` as of `as_of`."""
    engine = get_engine(url)
    full_url = engine.url.render_as_string(hide_password=False)  # iter_flags reconnects
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(
                    text(read_query("queries/quality_check_run_by_id.sql")), {"id": check_run_id}
                )
                .mappings()
                .first()
            )
    finally:
        engine.dispose()
    if row is None or row["status"] != "succeeded":
        state = "does not exist" if row is None else f"is {row['status']}"
        raise CheckRunNotFound(f"check run {check_run_id} {state}")
    if source is not None and row["source"] != source:
        raise CheckRunNotFound(f"check run {check_run_id} is of {row['source']!r}, not {source!r}")
    run_as_of = _as_date(row["as_of"])
    if as_of is not None and run_as_of != as_of:
        raise CheckRunNotFound(f"check run {check_run_id} is as of {run_as_of}, not {as_of}")
    summary = json.loads(row["summary_json"] or "{}")
    return CheckRun(
        id=int(row["id"]),
        run_ledger_id=int(row["run_ledger_id"]),
        as_of=run_as_of or dt.date.min,
        source=_text(row["source"]),
        expectations=[
            ExpectationOutcome(**{**e, "examples": tuple(e.get("examples") or ())})
            for e in summary.get("expectations", [])
        ],
        sessions_current=int(row["sessions_current"] or 0),
        sessions_recruiting=int(row["sessions_recruiting"] or 0),
        sessions_blocked=int(row["sessions_blocked"] or 0),
        sessions_unverified=int(row["sessions_unverified"] or 0),
        seconds=float(summary.get("seconds") or 0.0),
        rule_counts={str(k): int(v) for k, v in (summary.get("rules") or {}).items()},
        url=full_url,
    )


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


def _flag_rows_statement(template: str, rule: Rule, parameters: dict[str, object]) -> Any:
    """`template` (storing or counting) around quality_flag_rows.sql with the rule's own
    query spliced in (str.replace: the rule's SQL may hold braces of its own), bound."""
    flag_rows = read_query("queries/quality_flag_rows.sql").replace(
        "{rule_query}", rule.plain_sql()
    )
    sql = read_query(template).replace("{flag_rows}", flag_rows)
    return bound(sql, parameters)


def _flag_row_parameters(
    rule: Rule,
    check_run_id: int,
    as_of: dt.date,
    source: str | None,
    settings: CheckSettings | None = None,
) -> dict[str, object]:
    return {
        **bind_parameters(as_of, settings),
        "check_run_id": check_run_id,
        "rule_id": rule.id,
        "severity": rule.severity,
        "scope": source or "",
    }


def store_rule_flags(
    conn: Connection,
    rule: Rule,
    check_run_id: int,
    as_of: dt.date,
    source: str | None,
    settings: CheckSettings | None = None,
) -> int:
    """Run one rule and store its flags in the database, set-based; returns how many."""
    parameters = _flag_row_parameters(rule, check_run_id, as_of, source, settings)
    statement = _flag_rows_statement("queries/quality_store_flags.sql", rule, parameters)
    return int(conn.execute(statement).rowcount or 0)


def count_rule_flags(
    conn: Connection,
    rule: Rule,
    as_of: dt.date,
    source: str | None,
    settings: CheckSettings | None = None,
) -> int:
    """How many flags the rule would store now (dry runs: nothing is written)."""
    parameters = _flag_row_parameters(rule, 0, as_of, source, settings)  # no run: id unused
    statement = _flag_rows_statement("queries/quality_count_flags.sql", rule, parameters)
    return int(conn.execute(statement).scalar_one())


def _connection_count(engine: Engine, connections: int | None) -> int:
    """Rules run on this many connections at once: PostgreSQL runs an `INSERT … SELECT` on
    one core, and the rules are independent, so one connection per core (at most 4;
    KAIROS_CHECK_CONNECTIONS overrides). SQLite has one writer: always 1."""
    if engine.dialect.name != "postgresql":
        return 1
    if connections is None:
        configured = settings.get("KAIROS_CHECK_CONNECTIONS")
        connections = int(configured) if configured else min(os.cpu_count() or 1, 4)
    return max(1, connections)


def _longest_first(engine: Engine, rules: Sequence[Rule], source: str | None) -> list[Rule]:
    """The rules ordered by the seconds each took in the scope's last succeeded run,
    longest first (file order for the others): with several connections, the long rules
    start first and the short ones fill the gaps."""
    with engine.connect() as conn:
        summary = conn.execute(
            text(read_query("queries/quality_last_rule_seconds.sql")), {"scope": source or ""}
        ).scalar_one_or_none()
    try:
        seconds = json.loads(summary or "{}").get("rule_seconds") or {}
    except (ValueError, AttributeError):
        seconds = {}
    order = {rule.id: index for index, rule in enumerate(rules)}
    return sorted(rules, key=lambda r: (-float(seconds.get(r.id, 0.0)), order[r.id]))


def store_flags(
    engine: Engine,
    rules: Sequence[Rule],
    check_run_id: int,
    as_of: dt.date,
    source: str | None,
    *,
    connections: int | None = None,
    settings: CheckSettings | None = None,
) -> tuple[dict[str, int], dict[str, float]]:
    """Run every rule and store its flags; returns (flags per rule, seconds per rule).

    Each connection takes the next rule from a shared queue and stores it in its own
    transaction, committed when the queue is empty. A failure stops the others before their
    next rule and is raised; the caller then deletes the run's flags (readers use succeeded
    runs only, so flags committed by one connection before the run ends are never read)."""
    count = min(_connection_count(engine, connections), len(rules)) or 1
    pending = queue.SimpleQueue[Rule]()
    for rule in _longest_first(engine, rules, source) if count > 1 else rules:
        pending.put(rule)
    stored: dict[str, int] = {}
    seconds: dict[str, float] = {}
    failed = threading.Event()

    def work() -> None:
        try:
            with engine.begin() as conn:
                while not failed.is_set():
                    try:
                        rule = pending.get_nowait()
                    except queue.Empty:
                        return
                    started = time.perf_counter()
                    stored[rule.id] = store_rule_flags(
                        conn, rule, check_run_id, as_of, source, settings
                    )
                    seconds[rule.id] = round(time.perf_counter() - started, 3)
        except BaseException:
            failed.set()
            raise

    if count == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="check-rules") as pool:
            futures = [pool.submit(work) for _ in range(count)]
            for future in futures:
                future.result()  # the first failure is raised here
    return {r.id: stored[r.id] for r in rules}, {r.id: seconds[r.id] for r in rules}


def iter_flags(url: str, check_run_id: int, chunk: int = 5_000) -> Iterator[Flag]:
    """Stream the flags of a stored run (server-side cursor on PostgreSQL)."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(
                text(read_query("queries/quality_flags_of_run.sql")), {"run_id": check_run_id}
            )
            for row in result.mappings():
                yield flag_from_row(dict(row))
    finally:
        engine.dispose()


def flag_from_row(row: Mapping[str, Any]) -> Flag:
    return Flag(
        rule_id=str(row["rule_id"]),
        severity=str(row["severity"]),
        as_of=_as_date(row["as_of"]) or dt.date.min,
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
        message=render_message(row),
    )


def headline(conn: Connection, as_of: dt.date, source: str | None) -> tuple[int, int]:
    """(sessions synchronised, sessions recruiting) of the scope on `as_of`."""
    row = conn.execute(
        text(read_query("queries/quality_headline.sql")),
        {"as_of": as_of, "scope": source or ""},
    ).one()
    return int(row.sessions_current or 0), int(row.sessions_recruiting or 0)


def blocked_counts(conn: Connection, check_run_id: int) -> tuple[int, int]:
    """(sessions blocked, sessions with no open modality in the offer and KAIROS not
    checked) of a stored run: the headline rule's flags, by what they rest on."""
    row = conn.execute(
        text(read_query("queries/quality_blocked_sessions_count.sql")),
        {"run_id": check_run_id, "headline_rule": HEADLINE_RULE},
    ).one()
    return int(row.blocked or 0), int(row.unverified or 0)


def run_checks(
    url: str | None,
    as_of: dt.date,
    *,
    source: str | None = None,
    rules: Sequence[Rule] | None = None,
    lock_timeout: float = 600.0,
    connections: int | None = None,
    settings: CheckSettings | None = None,
) -> CheckRun:
    """Evaluate every rule as of `as_of`, store the flags; returns the run. `settings`:
    the rules' delays (default: `CheckSettings.from_env()`).

    Check runs of one scope (a source, or all) are serialised like loads; holding the lock,
    a run marks any other `running` check of that scope as interrupted (a killed process
    cannot record its own end; its writes were rolled back by the database). A run whose
    lock was lost on the way (its connection terminated: RunLockLost) is recorded failed.
    """
    engine: Engine = get_engine(url)
    require_current_schema(engine)
    with run_lock(engine, run_kind=RUN_KIND, source=source or "*", timeout=lock_timeout) as lock:
        return _run_checks_locked(
            engine,
            as_of,
            lock,
            source=source,
            rules=rules,
            connections=connections,
            settings=settings or CheckSettings.from_env(),
        )


def _run_checks_locked(
    engine: Engine,
    as_of: dt.date,
    lock: RunLock,
    *,
    source: str | None,
    rules: Sequence[Rule] | None,
    connections: int | None = None,
    settings: CheckSettings | None = None,
) -> CheckRun:
    started = time.perf_counter()
    gx_url = engine.url.render_as_string(hide_password=False)
    ledger_id = start_run(engine, run_kind=RUN_KIND, source=source)
    interrupted = mark_interrupted_runs(
        engine, run_kind=RUN_KIND, source=source, current_run_id=ledger_id
    )
    with engine.begin() as conn:
        for stale in interrupted:
            # A run killed after committing its flags (before GX finished) leaves them
            # behind: readers only use succeeded runs, and they are removed here.
            conn.execute(
                text(
                    "DELETE FROM quality_check_result WHERE check_run_id IN (SELECT id FROM "
                    "quality_check_run WHERE run_ledger_id = :ledger AND status = 'running')"
                ),
                {"ledger": stale},
            )
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
        rule_list = list(rules) if rules is not None else list(load_rules())
        # Where the run's time went, kept in summary_json (a slow run explained afterwards).
        stage_seconds: dict[str, float] = {}
        stage_started = time.perf_counter()
        used = _connection_count(engine, connections)
        stored, rule_seconds = store_flags(
            engine, rule_list, check_run_id, as_of, source, connections=used, settings=settings
        )
        stage_seconds["store_flags"] = round(time.perf_counter() - stage_started, 3)
        stage_started = time.perf_counter()
        # Committed, so GX (its own connection) validates exactly what was stored.
        rule_counts, outcomes = validate_run(gx_url, check_run_id, rule_list)
        stage_seconds["gx_validation"] = round(time.perf_counter() - stage_started, 3)
        if rule_counts != stored:
            raise RuntimeError(f"GX counted {rule_counts} flags, the run stored {stored}")
        with engine.begin() as conn:
            current, recruiting = headline(conn, as_of, source)
            blocked, unverified = blocked_counts(conn, check_run_id)
            run = CheckRun(
                id=check_run_id,
                run_ledger_id=ledger_id,
                as_of=as_of,
                source=source,
                expectations=outcomes,
                sessions_current=current,
                sessions_recruiting=recruiting,
                sessions_blocked=blocked,
                sessions_unverified=unverified,
                seconds=time.perf_counter() - started,
                rule_counts=rule_counts,
                url=gx_url,
            )
            summary = {
                **run.summary(),
                "rule_seconds": rule_seconds,
                "stage_seconds": stage_seconds,
                "connections": used,
                "settings": asdict(settings) if settings is not None else {},
            }
            conn.execute(
                text(
                    "UPDATE quality_check_run SET status = 'succeeded', finished_at = :now, "
                    "sessions_current = :current, sessions_recruiting = :recruiting, "
                    "sessions_blocked = :blocked, sessions_unverified = :unverified, "
                    "flags_total = :total, summary_json = :summary WHERE id = :id"
                ),
                {
                    "now": db_timestamp(conn, utcnow()),
                    "current": current,
                    "recruiting": recruiting,
                    "blocked": blocked,
                    "unverified": unverified,
                    "total": run.flags_total,
                    "summary": json.dumps(summary, ensure_ascii=False, sort_keys=True),
                    "id": check_run_id,
                },
            )
            finish_run(
                conn,
                ledger_id,
                status="succeeded",
                counts={},
                extra_counts={
                    "check_run_id": check_run_id,
                    "flags": run.flags_total,
                    **rule_counts,
                },
            )
            # Last, before the commit: a run that lost its lock may have overlapped another
            # run of the scope, so its success is not recorded (the except below fails it).
            lock.assert_held()
    except Exception as exc:
        with engine.begin() as conn:
            # A failed run leaves no flags behind (they may have been committed for GX).
            conn.execute(
                text("DELETE FROM quality_check_result WHERE check_run_id = :id"),
                {"id": check_run_id},
            )
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
        run.flags_total,
        run.seconds,
    )
    return run
