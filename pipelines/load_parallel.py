"""Staging rows, and the parallel read → validate → extract → map of a snapshot.

`stage_mapped` turns one mapped formation into staging rows; the sequential stager of
pipelines/load.py and the parallel workers below share it, so both stage the same rows.

The parallel path (`run_parallel`, used by `load_snapshot` on large files): `workers`
processes each parse the whole file with the project's reader (`OfferReader(shard=…)`), but
validate, extract and map only their share of it — blocks of `BLOCK_FORMATIONS` consecutive
formations, dealt round-robin — and send each block, already rendered as staging rows
(PostgreSQL COPY text, or tuples for SQLite), through a pipe (bounded: a worker waits while
the loading process is behind). The loading process takes the blocks back in document order
and writes them into the staging tables of its one transaction; everything after staging
(dedupe, upserts, closings, history) is unchanged.

Same rows as the sequential path: a block's rows get `seq` values `block << SEQ_SHIFT`
upwards, so the document order (what "later rows win" relies on) is the same; quarantined
records come back in document order with their own lines (each worker reads the real file).
A whole-document failure seen by a worker (DocumentError, e.g. truncation) is re-raised in
the loading process, which rolls back; on any failure the workers are terminated and joined.
Workers never touch the database and import no SQLAlchemy (this module doesn't either).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import sys
import time
import types
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from core.config import SourceConfig
from core.copy_format import copy_text_lines
from transforms.formation_digest import DigestSet, UnchangedFormation
from transforms.kairos_mapping import MappedFormation, map_formation
from transforms.reader import OfferReader
from transforms.records import Formation, QuarantinedRecord

STAGING_TABLES = (
    "stg_organisation",
    "stg_formation",
    "stg_action",
    "stg_session",
    "stg_slot",
    "stg_formation_seen",
)
# stg_formation_seen.state: what the load did with one occurrence of a formation key.
READ, UNCHANGED, REJECTED = 0, 1, 2
BLOCK_FORMATIONS = 32  # formations per work unit: small enough to interleave, big enough to batch
SEQ_SHIFT = 24  # a block's rows are numbered from block << 24 (16 M rows per block at most)
GET_POLL_SECONDS = 0.5


Buffers = dict[str, list[tuple[object, ...]]]


def new_buffers() -> Buffers:
    return {table: [] for table in STAGING_TABLES}


def stage_mapped(buffers: Buffers, mapped: MappedFormation, seq: int) -> int:
    """Append the staging rows of one mapped formation; `seq` is the last number used.
    Returns the new last number (rows are numbered in document order)."""
    for org in mapped.organisations:
        seq += 1
        buffers["stg_organisation"].append((seq, *org))
    seq += 1
    buffers["stg_formation"].append((seq, *mapped.formation))
    for action in mapped.actions:
        seq += 1
        buffers["stg_action"].append((seq, *action))
    session_seq: dict[tuple[str, str], int] = {}
    for session in mapped.sessions:
        seq += 1
        session_seq[(session.carif_session_numero, session.dispensateur_siret)] = seq
        buffers["stg_session"].append((seq, *session))
    for slot in mapped.slots:
        owner = session_seq[(slot.carif_session_numero, slot.dispensateur_siret)]
        seq += 1
        buffers["stg_slot"].append((seq, owner, *slot[:3], "lheo", *slot[3:]))
    return seq


def stage_record(
    buffers: Buffers,
    record: Formation | UnchangedFormation | QuarantinedRecord,
    digest: int | None,
    config: SourceConfig,
    seq: int,
) -> int:
    """Stage one formation occurrence, in document order: its rows when it was read, and in
    every case its row of stg_formation_seen (key, digest, state, seq, organisations), from
    which the load knows which occurrence of a key is the last (the one that wins), which
    formations keep their rows (unchanged or rejected) and which digests to remember. An
    unchanged formation stages only that row: its rows stay in the database and its
    organisations come back from formation_digest (pipelines/load.py). A rejected one
    (quarantined) stages only that row too, under its numero ('' when it has none).
    Returns the last `seq` used."""
    if isinstance(record, UnchangedFormation):
        seq += 1
        buffers["stg_formation_seen"].append(
            (record.numero, record.digest, UNCHANGED, seq, None, None)
        )
        return seq
    if isinstance(record, QuarantinedRecord):
        if record.kind != "formation":
            return seq  # an element that is not a formation keeps nothing
        seq += 1
        buffers["stg_formation_seen"].append(
            (record.numero or "", None, REJECTED, seq, None, rejection_summary(record))
        )
        return seq
    mapped = map_formation(record, config)
    first = seq + 1
    seq = stage_mapped(buffers, mapped, seq)
    numbered = bool(record.numero) and digest is not None
    organisations = json.dumps([list(row) for row in mapped.organisations]) if numbered else None
    buffers["stg_formation_seen"].append(
        (
            mapped.formation.carif_formation_numero,
            digest if numbered else None,
            READ,
            first,
            organisations,
            None,
        )
    )
    return seq


def rejection_summary(record: QuarantinedRecord, limit: int = 400) -> str:
    """The first reason a formation was rejected, `path: message`, and how many more: what
    its sessions carry while it stays rejected (the schema messages name elements and
    lengths, never a person's data: docs/reader.md)."""
    if not record.reasons:
        return "rejected"
    first = record.reasons[0]
    text = f"{first.path}: {first.message}" if first.path else first.message
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    more = len(record.reasons) - 1
    return f"{text} (+{more} autre(s) motif(s))" if more else text


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True, slots=True)
class Block:
    """One block of formations, mapped: staging payload per table and quarantined records."""

    number: int
    payload: dict[str, Any]  # table → COPY text (PostgreSQL) or list of row tuples (SQLite)
    rows: dict[str, int]
    quarantined: list[QuarantinedRecord]


def _put(out: Connection, item: object) -> None:
    """Send one message. A pipe is bounded (the OS buffer): the worker waits while the
    loading process is behind; if the loading process is gone, the pipe breaks and the
    worker exits."""
    try:
        out.send(item)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        os._exit(3)


def _worker(
    path: str,
    source: str,
    config: SourceConfig,
    shard: tuple[int, int, int],
    copy_format: bool,
    out: Connection,
    digests: DigestSet,
) -> None:
    try:
        with OfferReader(path, source=source, shard=shard, digests=digests) as reader:
            current: int | None = None
            buffers = new_buffers()
            quarantined: list[QuarantinedRecord] = []
            seq = 0

            def emit() -> None:
                assert current is not None
                payload: dict[str, Any] = {}
                rows: dict[str, int] = {}
                for table, table_rows in buffers.items():
                    if table_rows:
                        rows[table] = len(table_rows)
                        payload[table] = (
                            copy_text_lines(table_rows) if copy_format else list(table_rows)
                        )
                        table_rows.clear()
                _put(out, ("block", Block(current, payload, rows, list(quarantined))))
                quarantined.clear()

            for record in reader:
                block = reader.position // shard[2]
                if block != current:
                    if current is not None:
                        emit()
                    current = block
                    seq = block << SEQ_SHIFT
                if isinstance(record, QuarantinedRecord):
                    quarantined.append(record)
                seq = stage_record(buffers, record, reader.last_digest, config, seq)
            if current is not None:
                emit()
            _put(out, ("done", dict(reader.counts)))
    except BaseException as exc:  # everything goes back to the loading process
        try:
            pickle.dumps(exc)
            failure: BaseException = exc
        except Exception:  # an unpicklable exception: keep its type name and message
            failure = RuntimeError(f"{type(exc).__name__}: {exc}")
        _put(out, ("error", failure))
    finally:
        out.close()


# --------------------------------------------------------------------------- loading side


@dataclass
class ParallelCounts:
    formations: int = 0
    valid: int = 0
    quarantined: int = 0
    unchanged: int = 0
    misplaced: int = 0
    elements: int = 0


def _get(pipe: Connection, process: BaseProcess) -> tuple[str, Any]:
    while not pipe.poll(GET_POLL_SECONDS):
        if not process.is_alive() and not pipe.poll(0):
            break
    try:
        return pipe.recv()
    except EOFError:
        pass
    process.join(1)
    raise RuntimeError(
        f"parallel load worker {process.name} died (exit code {process.exitcode}) without reporting"
    )


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned workers need only this module; without this, `spawn` would re-run the caller's
    `__main__` script in each worker (a script without an `if __name__ == "__main__"` guard
    would load again, recursively). `fork` is avoided: it would copy the loading process's
    database connection and memory into the workers."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def stream_parallel(
    file: Path,
    source: str,
    config: SourceConfig,
    *,
    workers: int,
    copy_format: bool,
    counts: ParallelCounts,
    block_formations: int = BLOCK_FORMATIONS,
    digests: DigestSet | None = None,
) -> Generator[Block, None, None]:
    """Yield the mapped blocks of `file` in document order; when it ends, `counts` holds the
    reader's counts summed over workers. Closing it early stops the workers."""
    digests = digests if digests is not None else DigestSet()
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]  # (receive, send) ends
    processes = [
        context.Process(
            target=_worker,
            args=(
                str(file),
                source,
                config,
                (index, workers, block_formations),
                copy_format,
                pipes[index][1],
                digests,
            ),
            name=f"kairos-load-worker-{index}",
            daemon=True,
        )
        for index in range(workers)
    ]
    try:
        with _main_module_hidden():
            for process in processes:
                process.start()
        for _, send in pipes:
            send.close()  # the workers hold the sending ends: EOF when one dies
        finished: set[int] = set()
        expected = 0
        while len(finished) < workers:
            owner = expected % workers
            if owner in finished:  # every earlier block came; the others must end too
                owner = next(i for i in range(workers) if i not in finished)
            kind, value = _get(pipes[owner][0], processes[owner])
            if kind == "error":
                raise value
            if kind == "done":
                finished.add(owner)
                counts.formations = max(counts.formations, value["formations"])
                counts.valid += value["valid"]
                counts.quarantined += value["quarantined"]
                counts.unchanged += value["unchanged"]
                counts.misplaced += value["misplaced"]
                counts.elements += value["elements"]
                continue
            if value.number != expected or len(finished):
                raise RuntimeError(
                    f"parallel load: block {value.number} arrived, expected {expected}"
                )
            expected += 1
            yield value
    finally:
        stop(processes, [end for pair in pipes for end in pair])


def stop(processes: Sequence[BaseProcess], ends: Sequence[Connection]) -> None:
    """Terminate and join every worker still alive (also after a failure)."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes:
        if process.pid is None:  # never started
            continue
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1)
    for end in ends:
        end.close()


def run_parallel(
    file: Path,
    source: str,
    config: SourceConfig,
    *,
    workers: int,
    copy_format: bool,
    write: Callable[[Block], None],
    block_formations: int = BLOCK_FORMATIONS,
    digests: DigestSet | None = None,
) -> ParallelCounts:
    """Feed every block, in document order, to `write`; return the summed reader counts."""
    counts = ParallelCounts()
    blocks = stream_parallel(
        file,
        source,
        config,
        workers=workers,
        copy_format=copy_format,
        counts=counts,
        block_formations=block_formations,
        digests=digests,
    )
    try:
        for block in blocks:
            write(block)
    finally:
        blocks.close()  # a failure in `write` stops the workers now, not at garbage collection
    return counts
