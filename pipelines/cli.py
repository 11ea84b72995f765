"""The `kairos-sync` command line: every pipeline step, callable without Airflow.

Each command is a thin shell over a typed function in pipelines/, transforms/ or
quality_checks/; the Airflow DAGs call the same functions. Failures of every command go
through one error path (pipelines/cli_errors.py): one `error:` line, one exit code per
failure class (README.md, "Exit codes"), never a traceback.
"""

from __future__ import annotations

import datetime
import json
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli_errors import CommandGroup, ExitCode, fail, remember_db
from transforms.reader import DocumentError

app = typer.Typer(
    cls=CommandGroup,
    name="kairos-sync",
    help="LHEO offers → KAIROS sessions: validate, load, check, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """LHEO offers → KAIROS sessions: validate, load, check, report."""


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="LHEO file (.xml or .xml.gz)")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for tools")
    ] = OutputFormat.text,
) -> None:
    """Validate every formation of FILE against the project's LHEO schema.

    Exit 0 when the document could be read (even with quarantined records), 2 when the
    whole document is refused.
    """
    from pipelines.validate import validate_offers

    try:
        report = validate_offers(file)
    except DocumentError as exc:
        raise fail(str(exc)) from None
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(report.to_text())


class GeneratedLheoVersion(Enum):
    v22 = "2.2"
    v23 = "2.3"


@app.command()
def generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write (.xml or .xml.gz)")],
    formations: Annotated[int, typer.Option(min=1, help="number of formations")] = 100,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    lheo_version: Annotated[
        GeneratedLheoVersion, typer.Option("--lheo-version", help="LHEO version")
    ] = GeneratedLheoVersion.v23,
    invalid_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of formations given one schema fault")
    ] = 0.0,
    reference_date: Annotated[
        str, typer.Option(help="YYYY-MM-DD around which session dates are spread")
    ] = "2026-11-01",
) -> None:
    """Write a synthetic, deterministic LHEO offer file (see samples/generator.py)."""
    import datetime

    from samples.generator import write_offers

    try:
        reference = datetime.date.fromisoformat(reference_date)
    except ValueError:
        raise fail(f"--reference-date must be YYYY-MM-DD, got {reference_date!r}") from None
    stats = write_offers(
        output,
        formations=formations,
        seed=seed,
        lheo_version=str(lheo_version.value),
        invalid_rate=invalid_rate,
        reference_date=reference,
    )
    typer.echo(
        f"{output}: {stats.formations} formations, {stats.actions} actions, "
        f"{stats.sessions} sessions, {len(stats.invalid_numeros)} invalid, "
        f"{stats.bytes_written} bytes"
    )
    if stats.invalid_numeros:
        shown = ", ".join(stats.invalid_numeros[:10])
        more = f" … (+{len(stats.invalid_numeros) - 10})" if len(stats.invalid_numeros) > 10 else ""
        typer.echo(f"invalid formations: {shown}{more}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where samples and outputs go")] = Path("var"),
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="database URL (default: SQLite in WORKDIR)", callback=remember_db
        ),
    ] = None,
) -> None:
    """The main job on sample offers (what `make run` runs): prints where outputs are."""
    from pipelines.demo import run_demo

    typer.echo(run_demo(workdir, db_url=db).summary())


# --- load, migrate, export (pipelines/load.py, pipelines/export_sessions.py) ---

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL (default: $KAIROS_DATABASE_URL, else var/ SQLite)",
        callback=remember_db,  # the error path names the database it could not use
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="sources file (default: KAIROS_SOURCES_CONFIG, else config/sources.yaml)"
    ),
]

export_app = typer.Typer(help="Export tables for KAIROS and the Region.", no_args_is_help=True)
app.add_typer(export_app, name="export")


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


@app.command()
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the database schema (Alembic, idempotent)."""
    from core.db import get_engine, schema_revision
    from core.db import migrate as run_migrations

    engine = get_engine(db)
    try:
        before = schema_revision(engine)
        run_migrations(engine)
        after = schema_revision(engine)
    finally:
        engine.dispose()
    change = f"revision {after}" if before == after else f"revision {before} → {after}"
    typer.echo(f"schema up to date ({change}): {engine.url.render_as_string(hide_password=True)}")


@app.command()
def archive(
    file: Annotated[Path, typer.Argument(help="the snapshot file that source published that day")],
    source: Annotated[str, typer.Option(help="source name (config/sources.yaml)")],
    date: Annotated[str, typer.Option(help="the night it belongs to, YYYY-MM-DD")],
    landing_zone: Annotated[
        Path | None, typer.Option(help="default: KAIROS_LANDING_ZONE, else var/landing")
    ] = None,
) -> None:
    """Put FILE in the landing zone as SOURCE's snapshot of DATE, with its sha256: the
    layout the nightly fetch writes, so that a backfill of that night can load it."""
    from pipelines.fetch import (
        FetchError,
        archive_dir,
        fetch_snapshot,
        landing_zone_from_env,
        sha256_file,
    )

    try:
        day = datetime.date.fromisoformat(date)
    except ValueError:
        raise fail(f"--date must be YYYY-MM-DD, got {date!r}") from None
    if not file.is_file():
        raise fail(f"{file}: not a file")
    landing = landing_zone or landing_zone_from_env()
    try:
        folder = archive_dir(landing, source, day)
    except FetchError as exc:  # a source name that is not a plain folder name
        raise fail(str(exc)) from None
    existing = sorted(p for p in folder.glob("*.sha256")) if folder.is_dir() else []
    if existing:
        names = ", ".join(p.name.removesuffix(".sha256") for p in existing)
        if sha256_file(file) not in {p.read_text(encoding="ascii").split()[0] for p in existing}:
            raise fail(f"{folder} already holds a different snapshot ({names}): remove it first")
    # Archiving is a fetch whose "today" is that night: same staging, sidecar and checks.
    snapshot = fetch_snapshot(
        source, location=str(file.resolve()), logical_date=day, landing_zone=landing, today=day
    )
    verb = "already archived" if snapshot.reused else "archived"
    typer.echo(f"{verb}: {snapshot.path} (sha256 {snapshot.sha256})")


@app.command()
def integrity(db: DbOption = None) -> None:
    """Count the rows whose run id or version key names a row that does not exist (the
    references checked set-wise, not per row: migration 0008). Exit 6 if any."""
    from core.db import get_engine
    from core.integrity import orphan_references

    engine = get_engine(db)
    try:
        with engine.connect() as conn:
            orphans = orphan_references(conn)
    finally:
        engine.dispose()
    broken = {reference: count for reference, count in orphans.items() if count}
    for reference, count in orphans.items():
        typer.echo(f"  {reference:<45} {count}")
    if broken:
        raise fail(f"{len(broken)} references name rows that do not exist", code=ExitCode.INTEGRITY)
    typer.echo(f"integrity: {len(orphans)} references checked, no orphan")


@app.command()
def load(
    file: Annotated[Path, typer.Argument(help="LHEO snapshot (.xml or .xml.gz)")],
    source: Annotated[str, typer.Option("--source", help="source name in the config")],
    config: ConfigOption = None,
    db: DbOption = None,
    lock_timeout: Annotated[
        float | None, typer.Option(help="seconds to wait for a run of the same source")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="worker processes (default: one per core on large files; 0 = none)"),
    ] = None,
    fast_path: Annotated[
        bool,
        typer.Option(
            "--fast-path/--no-fast-path",
            help="record a noop without reading when file, config and code are those of the "
            "source's last successful load",
        ),
    ] = True,
) -> None:
    """Read, validate, map and load FILE as the current snapshot of SOURCE.

    Exit 2 when the document is refused whole, the snapshot is refused (mass closing) or
    another run of the source holds the lock; the ledger row says why.
    """
    from core.db import get_engine, require_current_schema
    from pipelines.load import load_snapshot

    engine = get_engine(db)
    try:
        require_current_schema(engine)
    finally:
        engine.dispose()
    entry = load_snapshot(
        file,
        source=source,
        config=config,
        db_url=db,
        lock_timeout=lock_timeout,
        workers=workers,
        fast_path=fast_path,
    )
    typer.echo(f"run {entry.run_id} {entry.status}: {entry.source} ← {entry.snapshot_file}")
    typer.echo(f"  lheo {entry.lheo_version}, sha256 {entry.snapshot_sha256}")
    if "fast_path_same_input_as_run" in entry.counts:
        same = entry.counts["fast_path_same_input_as_run"]
        typer.echo(f"  same input as run {same}: not read again (--no-fast-path reads it)")
    if entry.counts.get("formations_unchanged"):
        typer.echo(
            f"  {entry.counts['formations_unchanged']} formations unchanged since the last "
            "load: not validated or mapped again (--no-fast-path reads them)"
        )
    for name, value in entry.ledger_counts().items():
        typer.echo(f"  {name:24} {value}")


@export_app.command("sessions")
def export_sessions_command(
    db: DbOption = None,
    output_format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default: stdout)")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="YYYY-MM-DD: slot states on this day (default today)"),
    ] = None,
) -> None:
    """Open KAIROS sessions with their recruitment slots (JSON array or CSV): `slots` with
    their state on --as-of, `open_slots` the open ones (the checks' definition)."""
    import sys

    from pipelines.export_sessions import ExportFormat as Fmt
    from pipelines.export_sessions import export_sessions

    day = _as_of(as_of) if as_of is not None else None
    fmt: Fmt = "csv" if output_format is ExportFormat.csv else "json"
    if output is None:
        export_sessions(sys.stdout, db_url=db, fmt=fmt, as_of=day)
        return
    with output.open("w", encoding="utf-8", newline="") as handle:
        count = export_sessions(handle, db_url=db, fmt=fmt, as_of=day)
    typer.echo(f"{output}: {count} sessions", err=True)


# --- KAIROS / France Travail exports (pipelines/kairos_exports/) ---


class KairosExportKind(StrEnum):
    adherents = "adherents"
    training_plans = "training-plans"
    appointments = "appointments"
    modalities = "modalities"


@app.command("ingest-kairos")
def ingest_kairos(
    file: Annotated[Path, typer.Argument(help="KAIROS / France Travail export (CSV)")],
    kind: Annotated[KairosExportKind, typer.Option("--kind", help="which export FILE is")],
    db: DbOption = None,
    covers: Annotated[
        list[str] | None,
        typer.Option(
            "--covers",
            help="modalities: a CARIF source whose sessions the export covers (repeatable; "
            "default: the sources of the sessions it lists)",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Load a KAIROS adherents list, training-plan export, appointments list or the list of
    the sessions' recruitment modalities.

    Candidates are pseudonymised with $KAIROS_PSEUDONYM_KEY. Exit 2 when the file is
    refused whole or the key is missing; bad lines are quarantined and the rest loads.
    """
    from pipelines.kairos_exports import ingest_export

    for covered in covers or ():
        _configured(covered, config)
    if kind is KairosExportKind.adherents:
        result = ingest_export(file, kind="adherents", db_url=db)
    elif kind is KairosExportKind.training_plans:
        result = ingest_export(file, kind="training-plans", db_url=db)
    elif kind is KairosExportKind.modalities:
        result = ingest_export(file, kind="modalities", db_url=db, covers=covers)
    else:
        result = ingest_export(file, kind="appointments", db_url=db)
    typer.echo(f"run {result.run_id} {result.status}: {kind.value} ← {file.name}")
    typer.echo(f"  encoding {result.encoding}, separator '{result.separator}'")
    for name, value in sorted(result.counts.items()):
        typer.echo(f"  {name:24} {value}")


@export_app.command("enrolments")
def export_enrolments_command(
    db: DbOption = None,
    output_format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.json,
) -> None:
    """Enrolments (pseudonymised candidates) with their current status (JSON or CSV)."""
    from pipelines.kairos_exports import export_enrolments

    if output_format is ExportFormat.csv:
        typer.echo(export_enrolments(db, "csv"), nl=False)
    else:
        typer.echo(export_enrolments(db, "json"))


# --- quality checks and the Region's report (quality_checks/) ---


def _as_of(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise fail(f"--as-of must be YYYY-MM-DD, got {value!r}") from None


def _configured(source: str | None, config: Path | None) -> None:
    """Refuse a --source that the sources file does not configure, as `load` does (a
    ConfigError naming the file and the configured sources), before anything is stored."""
    if source is not None:
        from core.config import load_config

        load_config(config).source(source)


@app.command()
def check(
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD: evaluate the rules as of")],
    db: DbOption = None,
    source: Annotated[
        str | None, typer.Option("--source", help="only this source's sessions")
    ] = None,
    config: ConfigOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for tools")
    ] = OutputFormat.text,
    listed: Annotated[
        int,
        typer.Option(
            "--list", min=0, help="text format: flags listed after the counts (0 = every flag)"
        ),
    ] = 50,
    kairos_max_age_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="a KAIROS modalities export older than this does not verify a session "
            "(default 2, or $KAIROS_MODALITIES_MAX_AGE_DAYS)",
        ),
    ] = None,
    result_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="a present candidate's result is due this many days before the start "
            "(default 7, or $KAIROS_RESULT_DAYS_BEFORE_START)",
        ),
    ] = None,
) -> None:
    """Run the quality rules (Great Expectations) and store every flag in the database.

    Exit 0 when the rules ran, flags or not (flags are findings); 2 on bad arguments or a
    source the sources file does not configure. The text format lists the first flags
    (--list); json streams every flag.
    """
    from quality_checks.rules import check_settings
    from quality_checks.runner import run_checks

    day = _as_of(as_of)
    _configured(source, config)
    settings = check_settings(kairos_max_age_days, result_days)
    run = run_checks(db, day, source=source, settings=settings)
    if output_format is OutputFormat.json:
        # Streamed: a national run has a million flags; one array, one flag per line.
        typer.echo("[", nl=False)
        for index, flag in enumerate(run.iter_flags()):
            typer.echo(
                ("," if index else "") + "\n" + json.dumps(flag.to_json(), ensure_ascii=False),
                nl=False,
            )
        typer.echo("\n]")
        return
    typer.echo(
        f"check run {run.id} as of {run.as_of}: {run.sessions_current} sessions, "
        f"{run.sessions_recruiting} recruiting, {run.sessions_blocked} blocked, "
        f"{run.sessions_unverified} with no open modality in the offer (KAIROS not checked), "
        f"{run.flags_total} flags ({run.seconds:.1f} s)"
    )
    for rule_id, count in run.rule_counts.items():
        typer.echo(f"  {rule_id}: {count}")
    for outcome in run.expectations:
        if not outcome.success:
            typer.echo(
                f"  expectation {outcome.table}.{outcome.column} {outcome.expectation}: "
                f"{outcome.unexpected_count} unexpected {outcome.error or ''}".rstrip()
            )
    for index, flag in enumerate(run.iter_flags()):
        if listed and index == listed:
            typer.echo(
                f"… and {run.flags_total - listed} more flags: --list 0 for all, "
                "--format json, or the report's CSV"
            )
            break
        typer.echo(
            f"{flag.severity}\t{flag.rule_id}\t{flag.source}\t{flag.carif_session_numero}\t"
            f"{flag.dispensateur_siret}\t{flag.message}"
        )


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="directory for the HTML, images, CSV")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD; omit with --send to resend DIR")
    ] = None,
    db: DbOption = None,
    source: Annotated[
        str | None, typer.Option("--source", help="one source (its recipients)")
    ] = None,
    send: Annotated[bool, typer.Option("--send", help="e-mail the report by SMTP")] = False,
    resend: Annotated[
        bool,
        typer.Option(
            "--resend",
            help="--send even a report already sent, or whose earlier sending has no "
            "recorded outcome",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the checks and write the Region's report into OUT; with --send, e-mail it.

    OUT is replaced whole or not at all (exit 3 when it cannot be written, the previous
    report kept). The report is on disk before any sending: if the SMTP server fails,
    rerun with `--send --out OUT` (no --as-of) to send the same report again. A report
    is e-mailed at most once: --send on one already sent says "already sent" (exit 0);
    exit 5 means it WAS sent but could not be recorded (docs/report.md).
    """
    from quality_checks.mail import ReportAlreadySent, SmtpError, send_report
    from quality_checks.report import build_report

    send = send or resend
    if as_of is None and not send:
        raise fail("--as-of is required (or --send alone, to resend an existing report)")
    day = _as_of(as_of) if as_of is not None else None
    _configured(source, config)
    if day is not None:
        written = build_report(db, day, out, source=source)
        typer.echo(f"report: {written.html_path}")
    if send:
        try:
            sent = send_report(out, config=config, resend=resend)
        except ReportAlreadySent as exc:
            typer.echo(str(exc))
            return
        except SmtpError as exc:
            raise fail(
                f"{exc} (the report stays in {out}; retry with --send)", code=ExitCode.NOT_SENT
            ) from None
        typer.echo(f"sent to {len(sent)} recipient(s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
