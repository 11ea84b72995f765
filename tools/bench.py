"""National-scale benchmark (`make bench`, `make bench-quick`): figures for docs/performance.md.

For each size (sessions) and LHEO version it generates one offer file with the project's
generator, then runs, on that same file and in the same run:

1. `xmllint --noout --stream --schema` with the project's schema (the C floor);
2. the project's full load into PostgreSQL (fresh database), then the database's floor:
   the rows that load wrote, COPYed into another fresh database (what PostgreSQL alone
   costs, whatever the loader does);
3. the same into SQLite (fresh file);
4. a second load of the same snapshot into PostgreSQL (nothing changed);
5. a load of a snapshot where ~1 % of the sessions changed (PostgreSQL);
6. the quality checks on PostgreSQL.

Then the "exports" step (`tools/bench_exports.py`): France Travail training-plan files of
100 k and 1 M lines read alone, then ingested (`kairos-sync ingest-kairos`) into
PostgreSQL, twice; `--profile-exports` adds a cProfile summary of the first ingestion.

Every step runs as its own process; its peak memory is the RSS of the whole process tree,
sampled every 20 ms. Results go to var/bench/results.json and, as a Markdown table, to
stdout (paste into docs/performance.md).

    python tools/bench.py [--quick] [--sizes 10000,100000,1000000] [--versions 2.2,2.3]
                          [--pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres]
                          [--export-lines 100000,1000000] [--profile-exports]
                          [--skip lheo|exports|ingest|sqlite|changed|floor,…]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_PG = os.environ.get(
    "DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
AS_OF = "2026-11-23"


@dataclass
class StepResult:
    step: str
    size: int
    version: str
    seconds: float
    peak_rss_mb: float
    file_mb: float
    sessions: int
    rows_written: int | None = None
    xmllint_ratio: float | None = None
    detail: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.file_mb / self.seconds if self.seconds else 0.0

    @property
    def sessions_per_s(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS of its process tree in MB, stdout)."""
    # Output goes to temporary files, not pipes: a chatty step must not block on a full pipe.
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
        handle = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [handle, *handle.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return seconds, peak / 1e6, stdout


def sessions_per_formation(version: str, workdir: Path) -> float:
    """Calibrate the generator: average sessions per formation for this version."""
    from samples.generator import write_offers

    stats = write_offers(workdir / "calibrate.xml", formations=400, seed=1, lheo_version=version)
    (workdir / "calibrate.xml").unlink()
    return stats.sessions / stats.formations


def change_one_percent(source: Path, target: Path) -> int:
    """Copy `source`, flipping the recruitment state of every 100th session that has one."""
    pattern = re.compile(rb"<etat-recrutement>([123])</etat-recrutement>")
    seen = changed = 0

    def flip(match: re.Match[bytes]) -> bytes:
        nonlocal seen, changed
        seen += 1
        if seen % 100:
            return match.group(0)
        changed += 1
        new = b"3" if match.group(1) != b"3" else b"1"
        return b"<etat-recrutement>" + new + b"</etat-recrutement>"

    with source.open("rb") as src, target.open("wb") as dst:
        for line in src:
            dst.write(pattern.sub(flip, line))
    return changed


def fresh_postgres(admin_url: str) -> str:
    name = f"kairos_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(admin_url: str, url: str) -> None:
    name = make_url(url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# The sample sources of config/sources.yaml, one per LHEO version.
SOURCE_OF_VERSION = {"2.2": "smf-normandie", "2.3": "sigma-occitanie"}


def load_command(file: Path, db: str, version: str) -> list[str]:
    source = SOURCE_OF_VERSION[version]
    return [str(BIN / "kairos-sync"), "load", str(file), "--source", source, "--db", db]


def rows_written(stdout: str) -> int | None:
    """Sum the ledger counts `kairos-sync load` prints (inserted + updated + closed)."""
    total = 0
    found = False
    for key in ("inserted", "updated", "closed"):
        for match in re.finditer(rf"^\s*\w+_{key}\s+(\d+)\s*$", stdout, re.MULTILINE):
            total += int(match.group(1))
            found = True
    return total if found else None


def generate(file: Path, version: str, size: int, workdir: Path, keep: bool) -> int:
    """Write the benchmark's offer file; returns its LHEO session count. With `keep`, a file
    generated before (same name, with its `.sessions` sidecar) is reused: the generator is
    deterministic, and a 1 M file takes minutes to write."""
    from samples.generator import write_offers

    sidecar = file.with_suffix(".sessions")
    if keep and file.exists() and sidecar.exists():
        print(f"# reusing {file.name}", flush=True)
        return int(sidecar.read_text())
    formations = max(1, round(size / sessions_per_formation(version, workdir)))
    started = time.perf_counter()
    stats = write_offers(file, formations=formations, seed=2026, lheo_version=version)
    sidecar.write_text(str(stats.sessions))
    print(f"# generated {file.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return stats.sessions


def bench_one(
    size: int,
    version: str,
    workdir: Path,
    pg_admin: str,
    skip: frozenset[str] = frozenset(),
    keep_files: bool = False,
) -> list[StepResult]:
    file = workdir / f"offers-{version}-{size}.xml"
    sessions = generate(file, version, size, workdir, keep_files)
    file_mb = file.stat().st_size / 1e6
    print(f"# {version} {size}: {sessions} sessions, {file_mb:.0f} MB", flush=True)
    results: list[StepResult] = []

    def record(step: str, seconds: float, peak: float, rows: int | None, detail: str = "") -> None:
        result = StepResult(step, size, version, seconds, peak, file_mb, sessions, rows)
        result.detail = detail
        results.append(result)
        print(
            f"  {step:<22} {seconds:8.1f} s  {result.mb_per_s:6.1f} MB/s  "
            f"{result.sessions_per_s:9.0f} sess/s  peak {peak:6.0f} MB  rows {rows}"
            + (f"  ({detail})" if detail else ""),
            flush=True,
        )

    xsd = ROOT / "lheo_schemas" / f"lheo-{version}.xsd"
    seconds, peak, _ = run_measured(
        ["xmllint", "--noout", "--stream", "--schema", str(xsd), str(file)]
    )
    record("xmllint --stream", seconds, peak, None)
    xmllint_seconds = seconds

    pg = fresh_postgres(pg_admin)
    sqlite_file = workdir / f"bench-{version}-{size}.sqlite"
    sqlite_file.unlink(missing_ok=True)  # a stale file from an interrupted run
    sqlite = f"sqlite:///{sqlite_file}"
    try:
        for db in (pg, sqlite):
            run_measured([str(BIN / "kairos-sync"), "migrate", "--db", db])
        seconds, peak, out = run_measured(load_command(file, pg, version))
        record("full load PostgreSQL", seconds, peak, rows_written(out), load_split(pg))
        if "floor" not in skip:
            seconds, rows = database_floor(pg, pg_admin, workdir)
            record("PG floor: COPY rows", seconds, 0.0, rows, "every row the load left, COPY only")
        if "sqlite" not in skip:
            seconds, peak, out = run_measured(load_command(file, sqlite, version))
            record("full load SQLite", seconds, peak, rows_written(out), load_split(sqlite))
        seconds, peak, out = run_measured(load_command(file, pg, version))
        record("reload unchanged (PG)", seconds, peak, rows_written(out))
        if "changed" not in skip:
            changed_file = workdir / f"offers-{version}-{size}-changed.xml"
            changed = change_one_percent(file, changed_file)
            seconds, peak, out = run_measured(load_command(changed_file, pg, version))
            split = load_split(pg)
            record(
                "1 % changed (PG)", seconds, peak, rows_written(out), f"{changed} sessions; {split}"
            )
            changed_file.unlink()
        seconds, peak, out = run_measured(
            [str(BIN / "kairos-sync"), "check", "--db", pg, "--as-of", AS_OF, "--list", "10"]
        )
        found = re.search(r"(\d+) flags \(", out)
        flags = int(found.group(1)) if found else None
        record("quality checks (PG)", seconds, peak, flags, "rows = flags")
        rule_profile(pg, workdir / f"rules-{version}-{size}.json")
    finally:
        drop_postgres(pg_admin, pg)
        sqlite_file.unlink(missing_ok=True)
        for leftover in workdir.glob(f"{sqlite_file.name}*"):  # WAL, shm, the load's lock file
            leftover.unlink(missing_ok=True)
        if not keep_files:
            file.unlink(missing_ok=True)
            file.with_suffix(".sessions").unlink(missing_ok=True)
    for result in results:
        result.xmllint_ratio = result.seconds / xmllint_seconds
    return results


def load_split(url: str) -> str:
    """Where the latest load's time went, from its ledger row: the read → validate → map →
    stage part (worker processes) and the set-based SQL part."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = conn.execute(
                text("SELECT counts_json FROM run_ledger WHERE run_kind = 'lheo' ORDER BY id DESC")
            ).scalar()
    finally:
        engine.dispose()
    values = json.loads(counts or "{}")
    steps = values.get("seconds_by_step") or {}
    return (
        f"read→stage {values.get('seconds_read_map_stage', 0):.1f} s, "
        f"SQL {values.get('seconds_apply', 0):.1f} s"
        + (" [" + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()) + "]" if steps else "")
    )


# What a full load leaves in the database, in foreign-key order.
FLOOR_TABLES = (
    "run_ledger",
    "organisation",
    "formation",
    "action",
    "kairos_session",
    "recruitment_slot",
    "kairos_session_version",
    "recruitment_slot_version",
    "formation_digest",
    "formation_digest_basis",
)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as psycopg2 takes it (no `+psycopg2` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_floor(url: str, pg_admin: str, workdir: Path) -> tuple[float, int]:
    """The database's own share of a full load, as a floor: COPY every row the load wrote
    (read back from `url` in binary COPY format) into a fresh migrated database with the
    same indexes, constraints and triggers, in one transaction, on one backend — the work
    PostgreSQL must do whatever the loader does before it. Returns (seconds, rows)."""
    import psycopg2

    floor = fresh_postgres(pg_admin)
    dumps: list[tuple[str, Path]] = []
    try:
        run_measured([str(BIN / "kairos-sync"), "migrate", "--db", floor])
        source = psycopg2.connect(libpq_url(url))
        try:
            with source.cursor() as cursor:
                for table in FLOOR_TABLES:
                    dump = workdir / f"floor-{table}.copy"
                    with dump.open("wb") as out:
                        cursor.copy_expert(f"COPY {table} TO STDOUT (FORMAT binary)", out)
                    dumps.append((table, dump))
                cursor.execute(
                    "SELECT " + " + ".join(f"(SELECT COUNT(*) FROM {t})" for t in FLOOR_TABLES)
                )
                rows = int(cursor.fetchone()[0])
        finally:
            source.close()
        target = psycopg2.connect(libpq_url(floor))
        try:
            started = time.perf_counter()
            with target.cursor() as cursor:
                for table, dump in dumps:
                    with dump.open("rb") as data:
                        cursor.copy_expert(f"COPY {table} FROM STDIN (FORMAT binary)", data)
            target.commit()
            seconds = time.perf_counter() - started
        finally:
            target.close()
    finally:
        for _, dump in dumps:
            dump.unlink(missing_ok=True)
        drop_postgres(pg_admin, floor)
    return seconds, rows


def rule_profile(url: str, target: Path) -> None:
    """Each quality rule's own time on the loaded PostgreSQL database, and the plan
    (EXPLAIN ANALYZE, BUFFERS) of the slowest one: where the checks' time goes."""
    import datetime as dt

    from quality_checks.rules import bind_parameters, load_rules

    params = bind_parameters(dt.date.fromisoformat(AS_OF))
    engine = create_engine(url)
    timings: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            for rule in load_rules():
                sql = rule.plain_sql()
                bound = {k: v for k, v in params.items() if f":{k}" in sql}
                started = time.perf_counter()
                conn.execute(text(sql), bound).fetchall()
                timings[rule.id] = round(time.perf_counter() - started, 3)
            slowest = max(timings, key=lambda rule_id: timings[rule_id])
            rule = next(r for r in load_rules() if r.id == slowest)
            sql = rule.plain_sql()
            bound = {k: v for k, v in params.items() if f":{k}" in sql}
            plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql), bound).scalars().all()
    finally:
        engine.dispose()
    target.write_text(json.dumps({"seconds": timings, "slowest": slowest, "plan": plan}, indent=2))
    ranked = sorted(timings.items(), key=lambda item: -item[1])
    print("  rules (s): " + ", ".join(f"{k} {v:.2f}" for k, v in ranked), flush=True)
    print(f"  plan of {slowest}: {target}", flush=True)


def machine() -> dict[str, str]:
    import lxml.etree as etree
    import sqlalchemy

    def version_of(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "not found"

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": f"{cpu} × {os.cpu_count()}",
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "python": platform.python_version(),
        "lxml": ".".join(map(str, etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, etree.LIBXML_VERSION)),
        "sqlalchemy": sqlalchemy.__version__,
        "xmllint": version_of(["xmllint", "--version"]),
        "postgresql": version_of(["psql", "--version"]),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


def markdown(results: list[StepResult]) -> str:
    lines = [
        "| LHEO | sessions | step | time (s) | MB/s | sessions/s | peak RSS (MB) | rows "
        "| × xmllint |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.version} | {r.sessions:,} | {r.step} | {r.seconds:.1f} | {r.mb_per_s:.1f} | "
            f"{r.sessions_per_s:,.0f} | {f'{r.peak_rss_mb:.0f}' if r.peak_rss_mb else ''} | "
            f"{'' if r.rows_written is None else f'{r.rows_written:,}'} | "
            f"{r.xmllint_ratio:.2f} |"
        )
    return "\n".join(lines)


def markdown_exports(results: list[StepResult]) -> str:
    lines = [
        "| lines | step | time (s) | MB/s | lines/s | peak RSS (MB) | rows | counts |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.size:,} | {r.step} | {r.seconds:.1f} | {r.mb_per_s:.1f} | "
            f"{r.sessions_per_s:,.0f} | {r.peak_rss_mb:.0f} | "
            f"{'' if r.rows_written is None else f'{r.rows_written:,}'} | {r.detail} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="CI-sized: 2 000 sessions, 2.3")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--versions", default="2.2,2.3")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="an admin URL to create databases")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--skip",
        default="",
        help="steps to leave out, comma-separated: lheo (all LHEO steps), exports, ingest "
        "(the exports' ingestions), sqlite, changed, floor",
    )
    parser.add_argument(
        "--export-lines", default="100000,1000000", help="sizes of the training-plan files"
    )
    parser.add_argument(
        "--profile-exports",
        action="store_true",
        help="also run the first exports ingestion under cProfile and summarise it",
    )
    parser.add_argument(
        "--keep-files",
        action="store_true",
        help="keep the generated offer files in the work directory and reuse them next time",
    )
    args = parser.parse_args(argv)
    skip = frozenset(filter(None, args.skip.split(",")))
    if "lheo" not in skip and shutil.which("xmllint") is None:
        print("xmllint is missing: apt-get install libxml2-utils", file=sys.stderr)
        return 2
    sizes = [2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    versions = ["2.3"] if args.quick else args.versions.split(",")
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: list[StepResult] = []
    for size in sizes if "lheo" not in skip else []:
        for version in versions:
            results.extend(
                bench_one(size, version, args.workdir, args.pg_url, skip, args.keep_files)
            )
    export_results: list[StepResult] = []
    export_sizes = [2000] if args.quick else [int(s) for s in args.export_lines.split(",")]
    if "exports" not in skip:
        from bench_exports import bench_exports

        for lines in export_sizes:
            export_results.extend(
                bench_exports(
                    lines, args.workdir, args.pg_url, args.keep_files, args.profile_exports, skip
                )
            )
    info = machine()
    payload = {
        "machine": info,
        "as_of": AS_OF,
        "today": date.today().isoformat(),
        "results": [asdict(r) | {"mb_per_s": r.mb_per_s} for r in results],
        "exports": [asdict(r) | {"lines_per_s": r.sessions_per_s} for r in export_results],
    }
    name = f"results-{'-'.join(versions)}-{'-'.join(str(s) for s in sizes)}.json"
    if "lheo" in skip:
        name = f"results-exports-{'-'.join(str(s) for s in export_sizes)}.json"
    (args.workdir / name).write_text(json.dumps(payload, indent=2))
    print()
    print("\n".join(f"- {k}: {v}" for k, v in info.items()))
    print()
    if results:
        print(markdown(results))
    if export_results:
        print()
        print(markdown_exports(export_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
