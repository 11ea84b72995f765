"""The steps the Airflow DAGs run, as plain functions (testable and callable without Airflow).

The DAG files in dags/ stay thin: they declare the schedule, the params and the task graph,
and each task calls one function here with JSON-friendly arguments (what goes through
XCom). Heavy modules (SQLAlchemy, lxml, the loader) are imported inside the functions so
that importing this module — which the DAG files do at parse time for the constants and
the params — costs nothing and touches no database or network.

Settings come from the environment (never from the DAG files), so the same DAGs run the
trial, the tests and production:

* ``KAIROS_DATABASE_URL``   the project database (core/db.py; default var/kairos.sqlite)
* ``KAIROS_SOURCES_CONFIG`` the sources file (default config/sources.yaml)
* ``KAIROS_LANDING_ZONE``   the landing zone (default var/landing; see pipelines/fetch.py)

Source keys read here (config/sources.yaml, kept by core/config.py in ``options``)::

    snapshot:
      location: var/sources/smf-normandie   # folder, file, http(s):// or fsspec URL;
                                            # relative paths are relative to the project
      pattern: "*.xml*"                     # folder sources: newest matching file
      http_conn_id: carif_smf               # optional Airflow connection (basic auth)
      conn_id: carif_smf_sftp               # sftp:// locations: the Airflow connection
                                            # (login, password or key, pinned host_key)
    kairos_exports:
      location: …                           # default <snapshot folder>/kairos
      pattern: "*.csv"

A source without ``snapshot.location`` is not synchronised (it is logged and skipped).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import settings
from core.db import PROJECT_ROOT

if TYPE_CHECKING:
    from pipelines.sftp_source import SftpCredentials

log = logging.getLogger(__name__)

SESSIONS_ASSET_URI = "kairos://sessions"
SESSIONS_ASSET_NAME = "kairos_sessions"
SYNC_DAG_ID = "kairos_offer_sync"
REPORT_DAG_ID = "kairos_region_report"
TIMEZONE = "Europe/Paris"


class PlanError(ValueError):
    """The trigger form asked for something the configuration cannot give."""


def config_path() -> Path:
    from core.config import default_config_path

    return default_config_path()


def configured_source_names(path: Path | None = None) -> list[str]:
    """Source names of the sources file, read with plain YAML (cheap enough for parse time).

    Any problem gives an empty list: a broken sources file must not break the DAG import
    (the first task then reports the real error with the file and key).
    """
    try:
        import yaml

        document = yaml.safe_load((path or config_path()).read_text(encoding="utf-8"))
        sources = document.get("sources") if isinstance(document, dict) else None
        return sorted(str(name) for name in sources) if isinstance(sources, dict) else []
    except Exception:  # parse time: never raise, see docstring
        return []


@dataclass(frozen=True, slots=True)
class SourceJob:
    """Everything one mapped source needs, as it travels through XCom."""

    source: str
    location: str
    pattern: str
    exports_location: str | None
    exports_pattern: str
    http_conn_id: str | None
    conn_id: str | None  # sftp:// locations (docs/sftp-sources.md)
    logical_date: str  # YYYY-MM-DD, the landing-zone folder of this run
    as_of: str  # YYYY-MM-DD, the date the checks and the report speak about
    dry_run: bool
    send_email: bool
    snapshot_file: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceJob:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paris_date(moment: datetime.datetime | None) -> datetime.date:
    """The calendar day of `moment` in Europe/Paris (the day the sources publish in)."""
    from zoneinfo import ZoneInfo

    when = moment or datetime.datetime.now(tz=datetime.UTC)
    if when.tzinfo is None:  # Airflow hands out aware datetimes; be safe with naive ones
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(ZoneInfo(TIMEZONE)).date()


def parse_form_date(value: object, what: str) -> datetime.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise PlanError(f"{what} must be YYYY-MM-DD, got {value!r}") from None


def _resolve_location(value: str) -> str:
    if "://" in value:
        return value
    path = Path(value)
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def plan_jobs(
    params: Mapping[str, Any],
    *,
    run_date: datetime.date,
    config_file: Path | None = None,
) -> list[dict[str, Any]]:
    """One job per selected source, from the trigger form `params` and the sources file.

    `run_date` is the run's logical date in Europe/Paris: it names the landing-zone folder,
    and is the as-of date unless the form gives one. Unknown sources, a snapshot_file with
    several sources, or a selected source without a location are refused here, before any
    source work starts.
    """
    from core.config import load_config

    config = load_config(config_file or config_path())
    wanted = [str(s) for s in (params.get("sources") or [])]
    unknown = sorted(set(wanted) - set(config.sources))
    if unknown:
        known = ", ".join(sorted(config.sources)) or "none"
        raise PlanError(f"unknown source(s) {', '.join(unknown)} (configured: {known})")
    as_of = parse_form_date(params.get("as_of"), "as_of") or run_date
    snapshot_file = params.get("snapshot_file") or None
    names = wanted or sorted(config.sources)
    if snapshot_file and len(names) != 1:
        raise PlanError("snapshot_file needs exactly one source in `sources`")

    jobs: list[dict[str, Any]] = []
    for name in names:
        options = config.source(name).options
        snapshot = options.get("snapshot") or {}
        location = snapshot.get("location") if isinstance(snapshot, Mapping) else None
        if not location and not snapshot_file:
            if wanted:
                raise PlanError(f"source {name} has no snapshot.location in {config.path}")
            log.warning("source %s has no snapshot.location: not synchronised", name)
            continue
        exports = options.get("kairos_exports") or {}
        exports = exports if isinstance(exports, Mapping) else {}
        resolved = _resolve_location(str(location)) if location else ""
        from pipelines.fetch import default_exports_location

        exports_location = (
            _resolve_location(str(exports["location"]))
            if exports.get("location")
            else (default_exports_location(resolved) if resolved else None)
        )
        job = SourceJob(
            source=name,
            location=resolved,
            pattern=str(snapshot.get("pattern") or "*.xml*"),
            exports_location=exports_location,
            exports_pattern=str(exports.get("pattern") or "*.csv"),
            http_conn_id=snapshot.get("http_conn_id"),
            conn_id=snapshot.get("conn_id"),
            logical_date=run_date.isoformat(),
            as_of=as_of.isoformat(),
            dry_run=bool(params.get("dry_run", False)),
            # A form field left empty (null) means the default: send.
            send_email=params.get("send_email") is not False,
            snapshot_file=snapshot_file,
        )
        jobs.append(job.to_dict())
    if not jobs:
        raise PlanError(f"no source to synchronise: set snapshot.location in {config.path}")
    return jobs


def plan_run(
    params: Mapping[str, Any],
    *,
    conf: Mapping[str, Any] | None,
    run_type: str,
    run_date: datetime.date,
    config_file: Path | None = None,
) -> list[dict[str, Any]]:
    """`plan_jobs` for one DAG run, after saying what it will do and why.

    A backfill is made safe whatever the UI's dialog sent: Airflow 3.3 sends the form's
    values only when "Override parameters on existing runs" is ticked, so a backfill often
    has no conf at all, and the form's defaults (every source, send the report) would
    e-mail every Region once per past night. A backfill run that does not say `send_email`
    explicitly in its conf therefore writes its reports without sending them."""
    given = dict(conf or {})
    effective = dict(params)
    send_reason = "conf" if "send_email" in given else "default"
    if run_type == "backfill" and "send_email" not in given:
        effective["send_email"] = False
        send_reason = "backfill without send_email in its conf: reports written, not sent"
    jobs = plan_jobs(effective, run_date=run_date, config_file=config_file)
    log.info(
        "plan of this %s run: sources %s (%s), landing-zone date %s, as-of %s (%s), "
        "send_email=%s (%s), dry_run=%s (%s)",
        run_type,
        ", ".join(j["source"] for j in jobs),
        "conf" if given.get("sources") else "default: every configured source",
        run_date.isoformat(),
        jobs[0]["as_of"],
        "conf" if given.get("as_of") else "default: the logical date",
        jobs[0]["send_email"],
        send_reason,
        jobs[0]["dry_run"],
        "conf" if "dry_run" in given else "default",
    )
    return jobs


def migrate_step(jobs: Sequence[Mapping[str, Any]], *, db_url: str | None = None) -> list[Any]:
    """Bring the project database's schema up to date, once, before any source works.

    The only step that migrates (the others check and name `kairos-sync migrate`); a dry run
    changes nothing, so it only reports the revision. Returns `jobs` unchanged, so that the
    DAG maps the sources over this task's output."""
    from core.db import get_engine, head_revision, migrate, schema_revision

    engine = get_engine(db_url)
    try:
        before = schema_revision(engine)
        if all(job.get("dry_run") for job in jobs):
            log.info("dry run: schema left at revision %s (code: %s)", before, head_revision())
        else:
            migrate(engine)
            log.info("schema at revision %s (was %s)", schema_revision(engine), before)
    finally:
        engine.dispose()
    return list(jobs)


def form_params(
    *, sources_help: str, as_of_help: str, send_title: str, send_help: str
) -> dict[str, Any]:
    """The trigger-form fields both DAGs have: sources, as-of date, send. Every type admits
    null, so that the form shows them optional (each has a default); an empty field means
    the default. Built at parse time: reads the sources file's names and nothing else."""
    from airflow.sdk import Param

    return {
        "sources": Param(
            [],
            type=["null", "array"],
            items={"type": "string"},
            examples=configured_source_names(),
            title="Sources",
            description=sources_help,
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            title="As-of date",
            description=as_of_help,
        ),
        "send_email": Param(
            True, type=["null", "boolean"], title=send_title, description=send_help
        ),
    }


def snapshot_param_description() -> str:
    """The trigger form's help for `snapshot_file`, naming the landing zone of this server."""
    return (
        "Optional: load this file instead of fetching (one source only). It must lie inside "
        f"{_landing_zone()}/<source>/ (the landing zone, KAIROS_LANDING_ZONE); put it there with "
        "`kairos-sync archive FILE --source S --date D`. Anything else is refused."
    )


# --------------------------------------------------------------------------- per-source steps


def sftp_credentials(job_data: Mapping[str, Any]) -> SftpCredentials | None:
    """The SFTP credentials of an ``sftp://`` source, from its Airflow connection
    (``snapshot.conn_id``); None for any other location."""
    if not str(job_data.get("location") or "").startswith("sftp://"):
        return None
    conn_id = job_data.get("conn_id")
    if not conn_id:
        raise PlanError(
            f"source {job_data['source']}: an sftp:// location needs snapshot.conn_id, the "
            "Airflow connection holding the login and the server's host_key"
        )
    from pipelines.airflow_connections import sftp_credentials_from_connection

    return sftp_credentials_from_connection(str(conn_id))


def _landing_zone() -> Path:
    from pipelines.fetch import landing_zone_from_env

    return landing_zone_from_env()


def fetch_step(
    job_data: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    sftp: SftpCredentials | None = None,
) -> dict[str, Any]:
    """Fetch (or reuse) the snapshot and the KAIROS exports of one source."""
    from pipelines.fetch import (
        describe,
        fetch_kairos_exports,
        fetch_snapshot,
        snapshot_from_param,
    )

    job = SourceJob.from_dict(job_data)
    landing = _landing_zone()
    day = datetime.date.fromisoformat(job.logical_date)
    if job.snapshot_file:
        snapshot = snapshot_from_param(job.snapshot_file, source=job.source, landing_zone=landing)
    else:
        snapshot = fetch_snapshot(
            job.source,
            location=job.location,
            logical_date=day,
            landing_zone=landing,
            pattern=job.pattern,
            headers=headers,
            dry_run=job.dry_run,
            sftp=sftp,
        )
    exports = fetch_kairos_exports(
        job.source,
        exports_location=job.exports_location,
        logical_date=day,
        landing_zone=landing,
        pattern=job.exports_pattern,
        dry_run=job.dry_run,
    )
    return {
        "job": job.to_dict(),
        "snapshot": describe(snapshot),
        "exports": [describe(e) for e in exports],
    }


def load_step(fetched: Mapping[str, Any], *, db_url: str | None = None) -> dict[str, Any]:
    """Validate and load the snapshot (dry run: validate only, write nothing)."""
    job = SourceJob.from_dict(fetched["job"])
    path = Path(fetched["snapshot"]["path"])
    if job.dry_run:
        from pipelines.validate import validate_offers

        report = validate_offers(path, source=job.source)
        return {**fetched, "load": {"dry_run": True, "validation": report.to_dict()}}
    from core.db import get_engine, require_current_schema
    from pipelines.load import load_snapshot

    engine = get_engine(db_url)
    try:
        require_current_schema(engine)  # the DAG's migrate task ran before the sources
    finally:
        engine.dispose()
    entry = load_snapshot(path, source=job.source, config=config_path(), db_url=db_url)
    return {
        **fetched,
        "load": {
            "run_id": entry.run_id,
            "status": entry.status,
            "snapshot_sha256": entry.snapshot_sha256,
            **{k: v for k, v in entry.ledger_counts().items() if v is not None},
        },
    }


def exports_step(loaded: Mapping[str, Any], *, db_url: str | None = None) -> dict[str, Any]:
    """Ingest the KAIROS exports found for the source (dry run: list them only).

    Adherents first (the others refer to them), then the recruitment modalities, training
    plans, then appointments.
    """
    job = SourceJob.from_dict(loaded["job"])
    exports = sorted(loaded.get("exports") or [], key=lambda e: _EXPORT_ORDER[str(e["kind"])])
    if job.dry_run or not exports:
        return {**loaded, "ingested": [], "exports_dry_run": job.dry_run}
    from pipelines.kairos_exports.ingest import ingest_export

    ingested = []
    for export in exports:
        result = ingest_export(
            export["path"],
            kind=export["kind"],
            db_url=db_url,
            as_of=datetime.date.fromisoformat(job.as_of),
            # Found in the source's landing zone: a modalities export covers its sessions.
            covers=[job.source] if export["kind"] == "modalities" else None,
        )
        ingested.append(
            {
                "kind": result.kind,
                "file": result.file,
                "status": result.status,
                "run_id": result.run_id,
            }
        )
    return {**loaded, "ingested": ingested}


_EXPORT_ORDER = {"adherents": 0, "modalities": 1, "training-plans": 2, "appointments": 3}


def quiet_great_expectations() -> None:
    """Great Expectations logs every step at INFO (hundreds of lines a run): keep it at
    WARNING in task logs unless KAIROS_GX_LOG_LEVEL asks for more."""
    level = (settings.get("KAIROS_GX_LOG_LEVEL") or "WARNING").upper()
    logging.getLogger("great_expectations").setLevel(level)


def checks_step(ingested: Mapping[str, Any], *, db_url: str | None = None) -> dict[str, Any]:
    """Run the quality checks of the source as of the run's as-of date."""
    job = SourceJob.from_dict(ingested["job"])
    quiet_great_expectations()
    summary = run_checks(
        as_of=datetime.date.fromisoformat(job.as_of),
        source=job.source,
        db_url=db_url,
        dry_run=job.dry_run,
    )
    return {
        "source": job.source,
        "logical_date": job.logical_date,
        "as_of": job.as_of,
        "dry_run": job.dry_run,
        "send_email": job.send_email,
        "snapshot": ingested["snapshot"],
        "load": ingested.get("load"),
        "ingested": ingested.get("ingested", []),
        "checks": summary,
    }


def run_checks(
    *, as_of: datetime.date, source: str, db_url: str | None, dry_run: bool
) -> dict[str, Any]:
    """The quality rules for `source` as of `as_of` (quality_checks.runner).

    A normal run stores its flags (a check run in the database, which the report reads).
    A dry run evaluates the same rules read-only and stores nothing.
    """
    if not dry_run:
        from quality_checks.runner import run_checks as run_and_store

        run = run_and_store(db_url, as_of, source=source)
        return {
            "check_run_id": run.id,
            "flags": run.flags_total,
            "rules": dict(run.rule_counts),
            "sessions_current": run.sessions_current,
            "sessions_recruiting": run.sessions_recruiting,
            "sessions_blocked": run.sessions_blocked,
        }
    from sqlalchemy import inspect

    from core.db import get_engine
    from quality_checks.rules import load_rules
    from quality_checks.runner import count_rule_flags

    engine = get_engine(db_url)
    try:
        # A dry run never migrates: on a database with no schema there is nothing to check.
        if not inspect(engine).has_table("kairos_session"):
            return {"check_run_id": None, "flags": 0, "rules": {}, "skipped": "no schema"}
        # Read-only: the same rules and merging as a stored run, counted.
        with engine.connect() as conn:
            counts = {r.id: count_rule_flags(conn, r, as_of, source) for r in load_rules()}
    finally:
        engine.dispose()
    return {"check_run_id": None, "flags": sum(counts.values()), "rules": counts}


def asset_extra(results: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """What the sessions asset event carries to the report DAG (JSON, small)."""
    done = [r for r in results if r]
    as_of = sorted({str(r["as_of"]) for r in done})
    return {
        "sources": sorted(str(r["source"]) for r in done),
        "as_of": as_of[-1] if as_of else None,
        "logical_date": max((str(r["logical_date"]) for r in done), default=None),
        "send_email": any(bool(r.get("send_email")) for r in done),
        # The check run each source stored: the report shows that run, not a new one.
        "check_runs": {
            str(r["source"]): r["checks"]["check_run_id"]
            for r in done
            if (r.get("checks") or {}).get("check_run_id") is not None
        },
    }


__all__ = [
    "REPORT_DAG_ID",
    "SESSIONS_ASSET_NAME",
    "SESSIONS_ASSET_URI",
    "SYNC_DAG_ID",
    "PlanError",
    "SourceJob",
    "checks_step",
    "configured_source_names",
    "exports_step",
    "fetch_step",
    "load_step",
    "plan_jobs",
]
