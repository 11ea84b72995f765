"""KAIROS-origin recruitment slots, written with the core model's history convention.

An appointments export lists, per candidate, the ICO / RDVI / candidature window they
are on; the distinct appointments of a session become `recruitment_slot` rows with
`origin = 'kairos'` (the LHEO loader owns the 'lheo' ones). The convention of
core/history.py applies: a run marks the rows it writes (`first_seen_run_id`,
`last_seen_run_id`, `closed_run_id`), leaves unchanged rows alone, then
`record_versions` historises them in `recruitment_slot_version`.

An export only shows appointments that have candidates, so a slot missing from a later
export is *not* closed. A slot is closed when its lines say "RDV supprimé" (the OF
deleted it; "Rappel : les obligations légales" deck: "elle n'apparait plus sur Kairos"); a
deleted slot is never reopened by this loader.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.history import record_versions, utcnow

ORIGIN = "kairos"


@dataclass(frozen=True)
class SlotData:
    """The slot as one appointments line describes it."""

    slot_key: str
    modality: str
    modality_code: int
    starts_on: date | None
    ends_on: date | None
    start_time: str | None
    end_time: str | None
    capacity: int | None
    address_lines: str | None
    postal_code: str | None
    city: str | None
    remote: bool | None

    def merged(self, other: SlotData) -> SlotData:
        """Fill this line's blanks from another line of the same slot (first value wins)."""
        filled = {k: v if v is not None else getattr(other, k) for k, v in asdict(self).items()}
        return replace(self, **filled)

    def content_hash(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class PendingSlot:
    data: SlotData
    deleted: bool


class SlotWriter:
    """Collects the slots of a run, then writes them once (`flush`)."""

    def __init__(
        self,
        conn: Connection,
        tables: Mapping[str, sa.Table],
        run_id: int,
        count: Callable[[str], None],
    ) -> None:
        self.conn = conn
        self.t = tables["recruitment_slot"]
        self.run_id = run_id
        self.count = count
        self.pending: dict[tuple[int, str], PendingSlot] = {}

    def add(self, session_id: int, data: SlotData, deleted: bool) -> None:
        key = (session_id, data.slot_key)
        if key in self.pending:
            pending = self.pending[key]
            pending.data = pending.data.merged(data)
            pending.deleted = pending.deleted or deleted
        else:
            self.pending[key] = PendingSlot(data, deleted)

    def flush(self, at: datetime | None = None) -> dict[tuple[int, str], int]:
        """Insert / update / close the collected slots; returns their ids by (session, key)."""
        at = at or utcnow()
        t = self.t
        ids: dict[tuple[int, str], int] = {}
        for (session_id, slot_key), pending in self.pending.items():
            data = pending.data
            content_hash = data.content_hash()
            fields = {k: v for k, v in asdict(data).items() if k != "slot_key"}
            existing = self.conn.execute(
                sa.select(t.c.id, t.c.content_hash, t.c.closed_at)
                .where(t.c.kairos_session_id == session_id)
                .where(t.c.origin == ORIGIN)
                .where(t.c.slot_key == slot_key)
            ).first()
            if existing is None:
                slot_id = self.conn.execute(
                    t.insert().returning(t.c.id),
                    {
                        **fields,
                        "kairos_session_id": session_id,
                        "origin": ORIGIN,
                        "slot_key": slot_key,
                        "content_hash": content_hash,
                        "first_seen_run_id": self.run_id,
                        "last_seen_run_id": self.run_id,
                        "closed_at": at if pending.deleted else None,
                        "closed_run_id": self.run_id if pending.deleted else None,
                    },
                ).scalar_one()
                self.count("slots_inserted")
                if pending.deleted:
                    self.count("slots_closed")
            else:
                slot_id = existing.id
                if existing.closed_at is not None:
                    self.count("slots_unchanged")  # deleted by the OF: kept as it was
                elif pending.deleted:
                    self.conn.execute(
                        t.update()
                        .where(t.c.id == slot_id)
                        .values(closed_at=at, closed_run_id=self.run_id)
                    )
                    self.count("slots_closed")
                elif existing.content_hash != content_hash:
                    self.conn.execute(
                        t.update()
                        .where(t.c.id == slot_id)
                        .values(**fields, content_hash=content_hash, last_seen_run_id=self.run_id)
                    )
                    self.count("slots_updated")
                else:
                    self.count("slots_unchanged")
            ids[(session_id, slot_key)] = int(slot_id)
        if self.pending:
            record_versions(self.conn, "recruitment_slot", run_id=self.run_id, at=at)
        return ids
