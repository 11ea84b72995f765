"""Load one LHEO snapshot of a source into the KAIROS model: read → validate → map → load.

Guarantees (docs/data-model.md):

* **One transaction per snapshot.** Staging, upserts, closings, history and the final
  ledger counts commit together; after any failure (a truncated file raising DocumentError
  mid-read, a refused snapshot, a bug) nothing of the snapshot is visible, and the ledger
  row — written before, in its own transaction — is marked `failed` with the error.
* **Bulk and set-based.** Rows are streamed from the reader, mapped, and written in batches
  to temporary staging tables: PostgreSQL `COPY … FROM STDIN` (psycopg2 `copy_expert`),
  SQLite `executemany`. Then a handful of set-based statements (sql/load/*.sql, shared by
  both dialects) upsert, close and version. No ORM, no row-by-row round trips, and memory
  holds one batch, not the file.
* **Idempotent.** Every row carries a content hash; unchanged rows are not rewritten, so
  loading the same snapshot twice writes nothing but a ledger row with status `noop`. When
  the file's bytes, the source's configuration and this code equal those of the source's
  last successful load, that noop is recorded without reading the file (the fast path).
* **Parallel on large files.** Worker processes validate, extract and map their share of
  the formations (pipelines/load_parallel.py); this process writes the same staging rows,
  in document order, in its one transaction (docs/performance.md).
* **Closing with a guard.** Open sessions of the source absent from a full snapshot are
  closed (never deleted), unless that would close more than `max_close_share` of them
  (default 20 %): then the snapshot is refused as suspect and nothing changes.
* **No interleaving.** Runs of one source are serialised by a PostgreSQL advisory lock or,
  on SQLite, a file lock next to the database; the second waits a bounded time, then fails.

Here: the run (lock, ledger, transaction) and the order of its steps. Staging:
pipelines/load_staging.py; the set-based steps, the ledger entry and the errors:
pipelines/load_steps.py; the fast paths: pipelines/load_fastpath.py; the parallel read:
pipelines/load_parallel.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from core.config import SourceConfig, SourcesConfig, resolve_config
from core.db import get_engine, named_statements, read_sql
from core.history import (
    RunLock,
    RunLockTimeout,
    db_timestamp,
    fail_run,
    finish_run,
    mark_interrupted_runs,
    record_versions,
    run_lock,
    start_run,
    utcnow,
)
from pipelines.load_fastpath import (
    digest_basis,
    input_fingerprint,
    unchanged_input,
    worker_count,
)
from pipelines.load_parallel import Block, run_parallel
from pipelines.load_staging import (
    ORGANISATION_COLUMNS,
    Stager,
    create_staging,
    drop_staging,
    restage_organisations,
)
from pipelines.load_steps import (
    RUN_KIND,
    SESSION_STATS,
    SLOT_STATS,
    LedgerEntry,
    LoadError,
    LockTimeout,
    SnapshotRefused,
    analyze,
    bulk_settings,
    check_close_share,
    file_sha256,
    needless_dedupe,
    run_named,
    store_quarantine,
    upsert_entity,
)
from transforms.formation_digest import DigestSet
from transforms.reader import OfferReader
from transforms.records import QuarantinedRecord

DEFAULT_BATCH_SIZE = 20_000  # session rows per staging flush: bounded memory, few round trips
LOCK_POLL_SECONDS = 0.2


# --------------------------------------------------------------------------- locking


@contextmanager
def source_lock(engine: Engine, source: str, timeout: float) -> Iterator[RunLock]:
    """Hold the per-source run lock (core.history.run_lock: a PostgreSQL session
    advisory lock, a file lock beside a SQLite database), waiting at most `timeout` seconds.
    Yields the RunLock: the load checks it is still held before it commits."""
    try:
        with run_lock(engine, run_kind=RUN_KIND, source=source, timeout=timeout) as lock:
            yield lock
    except RunLockTimeout:
        raise LockTimeout(
            f"another load of source {source!r} is running; waited {timeout:g} s for it to"
            " finish (see run_ledger for the running row)"
        ) from None


@contextmanager
def _timed(entry: LedgerEntry, step: str) -> Iterator[None]:
    """Add the seconds a step of the set-based part takes to the ledger's counts
    (`seconds_by_step`): where a load's SQL time went can be read after the fact."""
    started = time.perf_counter()
    try:
        yield
    finally:
        steps = entry.counts.setdefault("seconds_by_step", {})
        steps[step] = round(steps.get(step, 0.0) + time.perf_counter() - started, 3)


# --------------------------------------------------------------------------- the load


def load_snapshot(
    path: str | os.PathLike[str],
    *,
    source: str,
    config: SourcesConfig | str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    full_snapshot: bool = True,
    lock_timeout: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    fast_path: bool = True,
) -> LedgerEntry:
    """Load the LHEO file at `path` as the current snapshot of `source`.

    `workers`: processes that validate, extract and map in parallel (None: one per core on
    files of PARALLEL_MIN_BYTES or more, else 0 = in this process; env KAIROS_LOAD_WORKERS
    overrides the default). `fast_path`: when the file, the source's configuration and the
    loader's code are those of the source's last successful load, record a `noop` without
    reading the file (docs/performance.md).

    Raises transforms.reader.DocumentError (whole document refused), SnapshotRefused
    (mass closing, unexpected LHEO version), LockTimeout (another run of the source), or
    the underlying error; in every case the database is as before and, when a ledger row
    was written, it says `failed` with the message.
    """
    file = Path(path)
    source_config = resolve_config(
        config if isinstance(config, SourcesConfig) or config is None else Path(config)
    ).source(source)
    engine = get_engine(db_url)
    try:
        sha = file_sha256(file)
        timeout = source_config.lock_timeout_seconds if lock_timeout is None else lock_timeout
        try:
            with source_lock(engine, source, timeout) as lock:
                run_id = start_run(
                    engine,
                    run_kind=RUN_KIND,
                    source=source,
                    snapshot_file=str(file),
                    snapshot_sha256=sha,
                )
                # We hold the lock: another 'running' row of the source is a killed run's.
                mark_interrupted_runs(
                    engine, run_kind=RUN_KIND, source=source, current_run_id=run_id
                )
                entry = LedgerEntry(run_id, source, "running", str(file), sha)
                try:
                    _load(
                        engine,
                        file,
                        source_config,
                        entry,
                        full_snapshot,
                        batch_size,
                        worker_count(file, workers),
                        fast_path,
                        lock,
                    )
                except BaseException as exc:
                    entry.status = "failed"
                    fail_run(
                        engine,
                        run_id,
                        f"{type(exc).__name__}: {exc}",
                        lheo_version=entry.lheo_version,
                        counts=entry.ledger_counts(),
                    )
                    if isinstance(exc, LoadError):
                        exc.run_id = run_id
                    raise
                return entry
        except LockTimeout:
            _record_lock_failure(engine, source, file, sha, timeout)
            raise
    finally:
        engine.dispose()


def _record_lock_failure(engine: Engine, source: str, file: Path, sha: str, timeout: float) -> None:
    """Best effort: the refused run is visible in the ledger. On SQLite the database may be
    busy with the very run we waited for; then the CLI message is the record."""
    try:
        run_id = start_run(
            engine, run_kind=RUN_KIND, source=source, snapshot_file=str(file), snapshot_sha256=sha
        )
        fail_run(
            engine, run_id, f"LockTimeout: another load of {source!r} held the lock {timeout:g} s"
        )
    except Exception:  # noqa: S110 - the LockTimeout raised by the caller is what matters
        pass


def _load(
    engine: Engine,
    file: Path,
    config: SourceConfig,
    entry: LedgerEntry,
    full_snapshot: bool,
    batch_size: int,
    workers: int = 0,
    fast_path: bool = False,
    lock: RunLock | None = None,
) -> None:
    started = time.perf_counter()
    fingerprint = input_fingerprint(entry.snapshot_sha256, config, full_snapshot)
    entry.counts["input_fingerprint"] = fingerprint
    with engine.connect() as conn:
        try:
            if conn.dialect.name == "sqlite":
                # Take SQLite's write lock now: a deferred transaction that reads first could
                # not upgrade to writing if another connection committed in between.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            now = utcnow()
            if not (fast_path and unchanged_input(conn, file, config, entry, fingerprint, now)):
                _load_in_transaction(
                    conn,
                    file,
                    config,
                    entry,
                    full_snapshot,
                    batch_size,
                    now,
                    workers,
                    skip_unchanged=fast_path,
                )
            entry.counts["seconds"] = round(time.perf_counter() - started, 3)
            finish_run(
                conn,
                entry.run_id,
                status=entry.status,
                counts=entry.ledger_counts(),
                extra_counts=entry.counts,
                lheo_version=entry.lheo_version,
            )
            if lock is not None:
                # A lock whose session died was released by the server: another load of
                # the source may be running; this one must not commit (RunLockLost).
                lock.assert_held()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def _load_in_transaction(
    conn: Connection,
    file: Path,
    config: SourceConfig,
    entry: LedgerEntry,
    full_snapshot: bool,
    batch_size: int,
    now: datetime,
    workers: int = 0,
    *,
    skip_unchanged: bool = True,
) -> None:
    source = config.name
    stamp = db_timestamp(conn, now)
    started = time.perf_counter()
    bulk_settings(conn)
    basis = digest_basis(config)
    stored_basis = conn.execute(
        text("SELECT basis FROM formation_digest_basis WHERE source = :source"),
        {"source": source},
    ).scalar_one_or_none()
    known = DigestSet()
    if skip_unchanged and stored_basis == basis:
        known = DigestSet(
            conn.execute(
                text("SELECT digest FROM formation_digest WHERE source = :source"),
                {"source": source},
            ).scalars()
        )
    entry.counts["formations_known"] = len(known)
    create_staging(conn)
    stager = Stager(conn, batch_size)
    quarantined: list[QuarantinedRecord] = []
    with OfferReader(file, source=source, digests=known) as reader:
        entry.lheo_version = reader.lheo_version
        if config.lheo_version and config.lheo_version != reader.lheo_version:
            raise SnapshotRefused(
                f"{file}: LHEO {reader.lheo_version} document, but source {source!r} is "
                f"configured as LHEO {config.lheo_version}"
            )
        if workers > 1:
            # Validate, extract and map in worker processes (pipelines/load_parallel.py);
            # this process only writes the staged blocks, in document order.
            def write(block: Block) -> None:
                quarantined.extend(block.quarantined)
                if len(quarantined) >= 1000:
                    store_quarantine(conn, quarantined, entry.run_id, source, stamp)
                stager.add_block(block)

            counts = run_parallel(
                file,
                source,
                config,
                workers=workers,
                copy_format=stager.postgres,
                write=write,
                digests=known,
            )
            read, valid, rejected = counts.formations, counts.valid, counts.quarantined
            unchanged = counts.unchanged
            entry.counts["formations_misplaced"] = counts.misplaced
            entry.counts["elements_quarantined"] = counts.elements
            entry.counts["load_workers"] = workers
        else:
            for record in reader:
                if isinstance(record, QuarantinedRecord):
                    quarantined.append(record)
                    if len(quarantined) >= 1000:
                        store_quarantine(conn, quarantined, entry.run_id, source, stamp)
                stager.add(record, config, reader.last_digest)
            counted = reader.counts
            read, valid, rejected = counted["formations"], counted["valid"], counted["quarantined"]
            unchanged = counted["unchanged"]
            entry.counts["formations_misplaced"] = counted["misplaced"]
            entry.counts["elements_quarantined"] = counted["elements"]
        stager.flush()
        if unchanged:
            entry.counts["organisations_of_unchanged_formations"] = restage_organisations(
                conn, stager, source
            )
        store_quarantine(conn, quarantined, entry.run_id, source, stamp)
        entry.formations_read = read
        entry.formations_valid = valid
        entry.formations_quarantined = rejected
        entry.counts["formations_unchanged"] = unchanged

    entry.counts["seconds_read_map_stage"] = round(time.perf_counter() - started, 3)
    params: dict[str, Any] = {
        "source": source,
        "run_id": entry.run_id,
        "now": stamp,
        "today": now.date().isoformat(),  # ISO text: a DATE on PostgreSQL, as SQLite stores it
    }
    started = time.perf_counter()
    with _timed(entry, "index_dedupe_staging"):
        for _, statement in named_statements(read_sql("load/index_staging.sql")):
            conn.exec_driver_sql(statement)
        analyze(
            conn,
            "stg_session (seq, carif_session_numero, dispensateur_siret)",
            "stg_slot (seq, session_seq, carif_session_numero, dispensateur_siret, slot_key)",
            "stg_formation (carif_formation_numero)",
            "stg_action (carif_action_numero)",
            "stg_organisation (siret)",
        )
        entry.counts.update(
            run_named(conn, "load/dedupe_staging.sql", params, skip=needless_dedupe)
        )
        entry.counts["duplicate_formations"] = int(
            conn.execute(text(read_sql("load/count_duplicate_formations.sql"))).scalar_one()
        )
    with _timed(entry, "kept_rows_close_guard"):
        for _, statement in named_statements(read_sql("load/kept_rows.sql")):
            conn.execute(text(statement), params)
        analyze(conn, "stg_kept_formation", "stg_kept_session", "stg_rejected_formation")
        if full_snapshot:
            check_close_share(conn, source, config.max_close_share, entry.run_id)
    apply_staged(conn, entry, params, full_snapshot=full_snapshot, now=now)
    with _timed(entry, "digests"):
        replace_all = int(full_snapshot or stored_basis != basis)
        digest_counts = run_named(
            conn,
            "load/record_digests.sql",
            {**params, "basis": basis, "replace_all": replace_all},
        )
        entry.counts["formation_digests_recorded"] = digest_counts.get("recorded", 0)
        drop_staging(conn)
    entry.counts["seconds_apply"] = round(time.perf_counter() - started, 3)


def apply_staged(
    conn: Connection,
    entry: LedgerEntry,
    params: dict[str, Any],
    *,
    full_snapshot: bool,
    now: datetime,
) -> None:
    """The set-based part: staged rows → target tables, closings, history, counts."""
    staged_sessions = conn.execute(text("SELECT COUNT(*) FROM stg_session")).scalar_one()
    staged_slots = conn.execute(text("SELECT COUNT(*) FROM stg_slot")).scalar_one()
    analyze(conn, SESSION_STATS, SLOT_STATS)
    with _timed(entry, "organisations_formations_actions"):
        organisations = conn.execute(
            text(
                read_sql("load/upsert_organisation.sql").format(
                    columns=", ".join(ORGANISATION_COLUMNS)
                )
            ),
            params,
        ).rowcount
        # Rows to keep open without staging them: formations skipped as unchanged or rejected.
        kept = bool(entry.counts.get("formations_unchanged") or entry.formations_quarantined)
        f_updated, f_inserted, f_closed = upsert_entity(
            conn, "formation", params, close=full_snapshot, kept=kept
        )
        a_updated, a_inserted, a_closed = upsert_entity(
            conn, "action", params, close=full_snapshot, kept=kept
        )
    with _timed(entry, "sessions"):
        updated, inserted, closed = upsert_entity(
            conn, "kairos_session", params, close=full_snapshot, kept=kept
        )
    entry.sessions_updated, entry.sessions_inserted, entry.sessions_closed = (
        updated,
        inserted,
        closed,
    )
    kept_sessions = int(
        conn.execute(text(read_sql("load/count_kept_sessions.sql")), params).scalar_one()
    )
    entry.sessions_unchanged = int(staged_sessions) - inserted - updated + kept_sessions
    entry.counts["sessions_of_unchanged_formations"] = kept_sessions
    with _timed(entry, "rejected_formations"):
        marks = run_named(conn, "load/mark_rejected_formations.sql", params)
        rejected = conn.execute(text(read_sql("load/count_rejected_sessions.sql")), params).one()
    entry.counts.update(marks)
    entry.counts["sessions_of_rejected_formations"] = int(rejected.sessions)
    entry.counts["rejected_formations_keeping_sessions"] = int(rejected.formations)
    entry.counts["sessions_of_unchanged_formations"] = kept_sessions - int(rejected.sessions)
    if updated + closed + sum(marks.values()):
        analyze(conn, SESSION_STATS)  # run-id distributions moved: history joins on them
    with _timed(entry, "slots"):
        for _, statement in named_statements(read_sql("load/resolve_slot_sessions.sql")):
            conn.execute(text(statement), params)
        if conn.dialect.name == "sqlite":
            for _, statement in named_statements(read_sql("load/index_staged_slots_sqlite.sql")):
                conn.exec_driver_sql(statement)
        analyze(conn, "stg_slot (kairos_session_id, slot_key)")
        s_updated, s_inserted, s_closed = upsert_entity(
            conn, "recruitment_slot", params, close=full_snapshot, kept=kept
        )
        if s_updated + s_closed:
            analyze(conn, SLOT_STATS)
    entry.slots_updated, entry.slots_inserted, entry.slots_closed = s_updated, s_inserted, s_closed
    with _timed(entry, "versions"):
        versions = record_versions(conn, "kairos_session", run_id=entry.run_id, at=now)
        slot_versions = record_versions(conn, "recruitment_slot", run_id=entry.run_id, at=now)
    entry.counts.update(
        {
            "sessions_staged": int(staged_sessions),
            "slots_staged": int(staged_slots),
            "slots_unchanged": int(staged_slots) - s_inserted - s_updated,
            "organisations_written": int(organisations or 0),
            "formations_inserted": f_inserted,
            "formations_updated": f_updated,
            "formations_closed": f_closed,
            "actions_inserted": a_inserted,
            "actions_updated": a_updated,
            "actions_closed": a_closed,
            "session_versions": versions,
            "slot_versions": slot_versions,
            "full_snapshot": int(full_snapshot),
        }
    )
    changed = (
        inserted
        + sum(marks.values())
        + updated
        + closed
        + s_inserted
        + s_updated
        + s_closed
        + f_inserted
        + f_updated
        + f_closed
        + a_inserted
        + a_updated
        + a_closed
        + int(organisations or 0)
    )
    entry.status = "succeeded" if changed else "noop"
