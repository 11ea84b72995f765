"""What the loaders of one KAIROS / France Travail export share: the run, its counts,
its quarantine and the KAIROS sessions a line links to.

Quarantine rows and session lookups are batched: a bad line is buffered and written with
the others of its batch, and the sessions of a batch of lines are read in one query
(`prefetch_sessions`) — a statement a line is what made ingestion crawl
(docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import bulk_insert
from core.history import utcnow

T = TypeVar("T")

RECORD_KINDS: Mapping[str, str] = {
    "adherents": "adherent",
    "training-plans": "training_plan",
    "appointments": "appointment",
    "modalities": "modality",
}
# Quarantine rows buffered before they are written; session keys kept between batches
# (a national file has ≈ 100 000 distinct keys; past this the cache starts again).
QUARANTINE_BATCH = 1_000
SESSION_CACHE_KEYS = 200_000


def now() -> datetime:
    return utcnow()


def content_hash(values: Mapping[str, Any]) -> str:
    payload = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LineErrors:
    """Reasons collected for one line; each names the column (`path`)."""

    def __init__(self, line: int) -> None:
        self.line = line
        self.reasons: list[dict[str, Any]] = []

    def add(self, path: str, message: str) -> None:
        self.reasons.append({"line": self.line, "path": path, "message": message})

    def parse(self, path: str, parser: Callable[[str], T | None], raw: str) -> T | None:
        """`parser(raw)`; a ValueError becomes a reason for `path` and the value None."""
        try:
            return parser(raw)
        except ValueError as exc:
            self.add(path, str(exc))
            return None

    def __bool__(self) -> bool:
        return bool(self.reasons)


@dataclass
class Run:
    """State shared by the loaders during one run."""

    conn: Connection
    tables: Mapping[str, sa.Table]
    run_id: int
    kind: str
    source: str
    file: str
    counts: dict[str, int] = field(default_factory=dict)
    _sessions: dict[tuple[str, str], list[sa.Row[Any]]] = field(default_factory=dict)
    _quarantine: list[dict[str, Any]] = field(default_factory=list)
    _writer: threading.Thread | None = None
    _writer_error: BaseException | None = None

    def count(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    def quarantine(
        self, line: int, reasons: list[dict[str, Any]], record_key: str | None = None
    ) -> None:
        """One quarantine row per rejected line; `path` is the first offending column.
        Buffered: `flush()` writes them (the loaders call it before the run ends)."""
        self._quarantine.append(
            {
                "run_id": self.run_id,
                "source": self.source,
                "file": self.file,
                "record_kind": RECORD_KINDS[self.kind],
                "record_key": record_key,
                "line": line,
                "path": reasons[0]["path"],
                "reasons": json.dumps(reasons, ensure_ascii=False),
                "created_at": now(),
            }
        )
        self.count("quarantined")
        if len(self._quarantine) >= QUARANTINE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Wait for the writes in progress, then write the buffered quarantine rows."""
        self.wait_writes()
        bulk_insert(self.conn, self.tables["quarantine"], self._quarantine)
        self._quarantine.clear()

    def write_behind(self, work: Callable[[], None]) -> None:
        """Run `work` (writes on `conn`) while the caller goes on reading the file.

        PostgreSQL: in a thread — the server stores a batch (`COPY`, its indexes) while
        this process parses the next one, on the other core. Every use of `conn` waits
        for it first (`wait_writes`). SQLite: at once (in-process, nothing to overlap)."""
        self.wait_writes()
        if self.conn.dialect.name != "postgresql":
            work()
            return

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the thread that waits
                self._writer_error = exc

        self._writer = threading.Thread(target=run, name="kairos-export-writer", daemon=True)
        self._writer.start()

    def wait_writes(self, *, failing: bool = False) -> None:
        """Wait for `write_behind`'s work; re-raise its error unless the run is already
        `failing` (then the transaction rolls back anyway)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join()
        error, self._writer_error = self._writer_error, None
        if error is not None and not failing:
            raise error

    def _session_query(self) -> sa.Select[Any]:
        t = self.tables["kairos_session"]
        return sa.select(
            t.c.id,
            t.c.source,
            t.c.dispensateur_siret,
            t.c.carif_action_numero,
            t.c.carif_session_numero,
        ).order_by(
            # Open sessions first: a closed one only when nothing else matches.
            t.c.closed_at.is_not(None),
            t.c.id,
        )

    def prefetch_sessions(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read the KAIROS sessions of every (CARIF session number, SIRET) of `keys` that
        is not known yet: all sessions of their CARIF numbers, 5 000 numbers a query
        (index ix_kairos_session_carif_number; a list of pairs would not use it)."""
        wanted = {k for k in keys if k not in self._sessions}
        if not wanted:
            return
        self.wait_writes()
        if len(self._sessions) + len(wanted) > SESSION_CACHE_KEYS:
            self._sessions.clear()
        for key in wanted:
            self._sessions[key] = []
        numbers = sorted({number for number, _ in wanted})
        t = self.tables["kairos_session"]
        for start in range(0, len(numbers), 5_000):
            query = self._session_query().where(
                t.c.carif_session_numero.in_(numbers[start : start + 5_000])
            )
            for row in self.conn.execute(query):
                # Every session of the number is read: any key of it not cached yet is
                # complete too (a cached one is already whole).
                key = (row.carif_session_numero, row.dispensateur_siret)
                if key not in self._sessions:
                    self._sessions[key] = []
                    wanted.add(key)
                if key in wanted:
                    self._sessions[key].append(row)

    def sessions(self, carif_session: str, siret: str) -> list[sa.Row[Any]]:
        """KAIROS sessions for (CARIF session number, dispensateur SIRET), any source."""
        key = (carif_session, siret)
        if key not in self._sessions:
            self.prefetch_sessions([key])
        return self._sessions[key]

    def link(
        self, carif_session: str | None, dispensateur: str | None, responsable: str | None
    ) -> tuple[int | None, str | None, str | None]:
        """(kairos_session_id, dispensateur SIRET to keep, link method).

        The dispensateur (formateur) SIRET first; else the responsable's, which is how a
        "guichet unique" programme keeps everything under the mandataire's account
        (DOMAIN.md). Several sessions (one per CARIF source) for the key: the oldest open
        one wins and the line is counted as ambiguous.
        """
        if carif_session:
            for siret, method in ((dispensateur, "dispensateur"), (responsable, "responsable")):
                if not siret:
                    continue
                found = self.sessions(carif_session, siret)
                if found:
                    if len(found) > 1:
                        self.count("ambiguous_links")
                    self.count("linked")
                    return int(found[0].id), str(found[0].dispensateur_siret), method
        self.count("unmatched")
        return None, dispensateur or responsable, None
