"""Enrolments of KAIROS / France Travail exports, written a batch of lines at a time.

Training plans and appointments both assert steps of an enrolment (lifecycle.py). The
lines are queued (`apply`); `flush` then, for the whole batch:

1. reads the enrolments the batch's candidates already have, with their event history
   (two queries, whatever the batch size);
2. confronts each line, in file order, with the enrolment as the earlier lines left it —
   in memory, so two lines of one candidate in one batch behave as if written one by one;
3. writes the new enrolments, their events and the changed enrolments set-wise
   (`core.db.write_rows` / `bulk_update`: `COPY` on PostgreSQL), on PostgreSQL in a
   writer thread while the next lines are parsed (`Run.write_behind`).

Nothing of an enrolment is kept between batches: the next batch reads what this one wrote,
so memory holds one batch whatever the file's size (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from core.db import PreparedRows, bulk_update, read_sql, write_rows
from pipelines.kairos_exports.lifecycle import CurrentState, Plan, Status, Step, plan_steps
from pipelines.kairos_exports.run import Run, content_hash, now

# Lines per batch: large enough that a batch's three queries and three bulk writes are
# a small part of its time, small enough that its IN lists stay well under SQLite's
# 32 766 bound parameters.
BATCH_LINES = 5_000
_IN_CHUNK = 5_000

DESCRIPTIVE = (
    "candidate_local",
    "candidate_national",
    "carif_session_numero",
    "carif_action_numero",
    "ft_session_id",
    "dispensateur_siret",
    "responsable_siret",
    "kairos_session_id",
    "link_method",
    "origin",
    "modality",
    "planned_start",
    "planned_end",
    "formation_id",
    "formation_label",
    "dispositif",
    "financeurs",
    "lieu_postal_code",
    "lieu_insee",
)
# What a later line can change on an enrolment (written back by `bulk_update`).
_UPDATED = (
    *DESCRIPTIVE,
    "content_hash",
    "current_status",
    "status_date",
    "current_slot_key",
    "entry_date",
    "exit_date",
    "last_source",
    "last_seen_run_id",
    "updated_at",
)
# What `_stored` reads: the columns a line is confronted with, not those it overwrites.
_OVERWRITTEN = ("last_source", "last_seen_run_id", "updated_at")
_SELECTED = ("id", "session_key", *(c for c in _UPDATED if c not in _OVERWRITTEN))
_INSERTED = (
    "id",
    "enrolment_key",
    "candidate",
    "session_key",
    "first_source",
    "first_seen_run_id",
    "created_at",
    *_UPDATED,
)


_EVENT_COLUMNS = (
    "seq",
    "status",
    "previous_status",
    "event_date",
    "slot_key",
    "recruitment_slot_id",
    "source_kind",
    "run_id",
    "source_line",
    "recorded_at",
)


@dataclass
class Candidate:
    """Pseudonyms of one candidate; `primary` keys the enrolment."""

    local: str | None
    national: str | None

    @property
    def primary(self) -> str:
        value = self.local or self.national
        assert value is not None
        return value


@dataclass
class _Line:
    """One queued line: what it asserts about whose enrolment."""

    line: int  # the record's line in the file (not the record: it holds personal data)
    record_key: str
    session_key: str
    sirets: frozenset[str]
    who: Candidate
    steps: tuple[Step, ...]
    values: dict[str, Any]
    slot_ids: Mapping[str, int]


@dataclass(eq=False)  # identity: the same enrolment, not equal columns
class _Enrolment:
    """An enrolment as the batch knows it: its columns, state and next event number."""

    order: tuple[int, int]  # (0, id) for a stored row, (1, n) for the batch's n-th new one
    row: dict[str, Any]
    state: CurrentState
    next_seq: int
    new: bool


def descriptive(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in DESCRIPTIVE}


def _last_slot(steps: tuple[Step, ...], default: str | None) -> str | None:
    for step in reversed(steps):
        if step.status is Status.POSITIONNE:
            return step.slot_key
    return default


def _path_dates(steps: tuple[Step, ...], row: Mapping[str, Any]) -> dict[str, Any]:
    """Entry and exit dates follow the events: the first entry, the latest exit."""
    dates: dict[str, Any] = {}
    for step in steps:
        if step.status is Status.ENTRE and not (row.get("entry_date") or dates.get("entry_date")):
            dates["entry_date"] = step.on
        if step.status in (Status.SORTI, Status.ABANDON):
            dates["exit_date"] = step.on
    return dates


def _any(column: sa.ColumnElement[Any], values: list[Any]) -> sa.ColumnElement[bool]:
    """`column = ANY(string_to_array(:list, ','))` (PostgreSQL): the list travels as one
    text parameter — an ARRAY parameter costs a bind conversion per element, and its
    thousands of quoted elements a large statement to parse. The values (pseudonyms, ids)
    hold no comma."""
    text = ",".join(str(v) for v in values)
    if text.count(",") != max(len(values) - 1, 0):
        raise ValueError(f"a value listed for {column} holds a comma")
    array = sa.func.string_to_array(sa.bindparam(None, text, type_=sa.Text()), ",")
    return column == sa.any_(sa.cast(array, ARRAY(column.type)))


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


class Enrolments:
    """Finds, creates and advances enrolments, a batch of lines at a time.

    `apply` queues a line and flushes every `batch_lines` (writing behind: the next lines
    are read while the batch is stored); the caller calls `flush()` once after its last
    line, which returns when everything is written."""

    def __init__(self, run: Run, batch_lines: int = BATCH_LINES) -> None:
        self.run = run
        self.t = run.tables["enrolment"]
        self.events = run.tables["enrolment_event"]
        self.batch_lines = batch_lines
        self._queue: list[_Line] = []

    def apply(
        self,
        *,
        line: int,
        record_key: str,
        session_key: str,
        sirets: Iterable[str],
        who: Candidate,
        steps: tuple[Step, ...],
        values: dict[str, Any],
        slot_ids: Mapping[str, int],
    ) -> None:
        """Queue a line (`line`: its number in the file): its `steps` will be confronted
        with the enrolment, and what is new written, or the line quarantined.

        `values` are the descriptive columns this line knows (None = unknown: an existing
        value is kept, so one source never erases what the other brought).
        """
        self._queue.append(
            _Line(
                line,
                record_key,
                session_key,
                frozenset(sirets),
                who,
                steps,
                values,
                slot_ids,
            )
        )
        if len(self._queue) >= self.batch_lines:
            self.flush(wait=False)

    # -- one batch ------------------------------------------------------------------------

    def flush(self, *, wait: bool = True) -> None:
        """Confront the queued lines with their enrolments and write the outcome; with
        `wait=False` the writes may still be in progress on return (`Run.write_behind`)."""
        lines, self._queue = self._queue, []
        self.run.wait_writes()  # the previous batch is stored before this one is read
        if not lines:
            return
        batch = _Batch(self, self._stored(lines))
        for line in lines:
            batch.apply(line)
        self.run.write_behind(batch.prepare())
        if wait:
            self.run.wait_writes()

    def _stored(self, lines: list[_Line]) -> list[_Enrolment]:
        """The stored enrolments of the batch's sessions and candidates, with histories.

        The query can return a few more (a candidate of the batch on another session of
        the batch): `_Batch.find` keeps only exact matches."""
        t, conn = self.t, self.run.conn
        session_keys = sorted({line.session_key for line in lines})
        locals_ = sorted({line.who.local for line in lines if line.who.local})
        nationals = sorted({line.who.national for line in lines if line.who.national})
        columns = [t.c[c] for c in _SELECTED]
        rows: dict[int, dict[str, Any]] = {}
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # One array parameter per list: no IN list of thousands of parameters to
            # render, and the two candidate indexes combined (BitmapOr). The sessions are
            # filtered here, not by the server: `= ANY` on a parameter array is a linear
            # scan of the array for every row.
            queries = [
                sa.select(*columns).where(
                    sa.or_(
                        _any(t.c.candidate_local, locals_),
                        _any(t.c.candidate_national, nationals),
                    ),
                )
            ]
        else:
            queries = [
                sa.select(*columns).where(column.in_(chunk))
                for column, people in (
                    (t.c.candidate_local, locals_),
                    (t.c.candidate_national, nationals),
                )
                for chunk in _chunks(people)
            ]
        wanted = set(session_keys)
        if postgres:  # index probes, whatever the statistics say (the SQL file says why)
            previous = conn.execute(sa.text(read_sql("kairos/index_lookups_begin.sql"))).one()
        for query in queries:
            for values in conn.execute(query):
                row = dict(zip(_SELECTED, values, strict=True))
                if row["session_key"] in wanted:
                    rows[row["id"]] = row
        histories: dict[int, list[tuple[str, date, str | None]]] = {i: [] for i in rows}
        ev = self.events
        history = sa.select(ev.c.enrolment_id, ev.c.status, ev.c.event_date, ev.c.slot_key)
        if postgres:
            history_queries = [history.where(_any(ev.c.enrolment_id, sorted(rows)))] if rows else []
        else:
            history_queries = [
                history.where(ev.c.enrolment_id.in_(chunk)) for chunk in _chunks(sorted(rows))
            ]
        for query in history_queries:
            for enrolment_id, status, on, slot_key in conn.execute(
                query.order_by(ev.c.enrolment_id, ev.c.seq)
            ):
                histories[enrolment_id].append((status, on, slot_key))
        if postgres:
            conn.execute(
                sa.text(read_sql("kairos/index_lookups_end.sql")), {"previous": previous.previous}
            )
        return [
            _Enrolment(
                (0, row_id),
                row,
                CurrentState(
                    Status(row["current_status"]),
                    row["status_date"],
                    row["current_slot_key"],
                    frozenset(histories[row_id]),
                ),
                len(histories[row_id]) + 1,
                new=False,
            )
            for row_id, row in rows.items()
        ]


class _Batch:
    """The lines of one flush, confronted in order with the enrolments in memory."""

    def __init__(self, owner: Enrolments, stored: list[_Enrolment]) -> None:
        self.owner = owner
        self.run = owner.run
        self.by_person: dict[tuple[str, str, str], list[_Enrolment]] = {}
        self.created: list[_Enrolment] = []
        self.touched: dict[int, _Enrolment] = {}
        # (enrolment, event columns without enrolment_id), in file order.
        self.new_events: list[tuple[_Enrolment, dict[str, Any]]] = []
        self.now = now()
        for enrolment in stored:
            self._index(enrolment)

    def _index(self, enrolment: _Enrolment) -> None:
        row = enrolment.row
        for kind, column in (("l", "candidate_local"), ("n", "candidate_national")):
            if row[column]:
                bucket = self.by_person.setdefault((row["session_key"], kind, row[column]), [])
                if not any(e is enrolment for e in bucket):
                    bucket.append(enrolment)

    def find(self, line: _Line) -> _Enrolment | None:
        """The first enrolment (lowest id, then the batch's new ones in order) of the
        line's session and dispensateur SIRETs held by the same person."""
        found: list[_Enrolment] = []
        who = line.who
        if who.local:
            found += self.by_person.get((line.session_key, "l", who.local), [])
        if who.national:
            found += self.by_person.get((line.session_key, "n", who.national), [])
        matching = [e for e in found if e.row["dispensateur_siret"] in line.sirets]
        return min(matching, key=lambda e: e.order) if matching else None

    def apply(self, line: _Line) -> None:
        run = self.run
        enrolment = self.find(line)
        plan: Plan = plan_steps(enrolment.state if enrolment else None, line.steps)
        if plan.rejection:
            run.quarantine(
                line.line,
                [{"line": line.line, "path": "status", "message": plan.rejection}],
                line.record_key,
            )
            return
        if enrolment is None:
            self._create(line, plan)
            return
        row = enrolment.row
        merged = dict(row)
        for key, value in line.values.items():
            if value is not None:
                merged[key] = value
        merged["candidate_local"] = row["candidate_local"] or line.who.local
        merged["candidate_national"] = row["candidate_national"] or line.who.national
        new_hash = content_hash(descriptive(merged))
        changed = new_hash != row["content_hash"]
        if changed:
            merged["content_hash"] = new_hash
        if plan.new_steps:
            self._add_events(enrolment, enrolment.state.status, plan.new_steps, line)
            last = plan.new_steps[-1]
            merged.update(
                current_status=last.status.value,
                status_date=last.on,
                current_slot_key=_last_slot(plan.new_steps, row["current_slot_key"]),
                **_path_dates(plan.new_steps, row),
            )
            changed = True
        if not changed:
            # Unchanged rows are not rewritten (history convention, core/history.py).
            run.count("unchanged")
            return
        merged.update(last_source=run.kind, updated_at=self.now, last_seen_run_id=run.run_id)
        enrolment.row = merged
        self._index(enrolment)
        if not enrolment.new:
            self.touched[merged["id"]] = enrolment
        run.count("updated")
        run.count("loaded")

    def _create(self, line: _Line, plan: Plan) -> None:
        run, who, values = self.run, line.who, line.values
        last = plan.new_steps[-1]
        row: dict[str, Any] = {
            **{column: None for column in _INSERTED},
            **values,
            "enrolment_key": f"{line.session_key}|{values['dispensateur_siret']}|{who.primary}",
            "candidate": who.primary,
            "candidate_local": who.local,
            "candidate_national": who.national,
            "session_key": line.session_key,
            "first_source": run.kind,
            "last_source": run.kind,
            "current_status": last.status.value,
            "status_date": last.on,
            "current_slot_key": _last_slot(plan.new_steps, None),
            **_path_dates(plan.new_steps, {}),
            "first_seen_run_id": run.run_id,
            "last_seen_run_id": run.run_id,
            "created_at": self.now,
            "updated_at": self.now,
        }
        row["content_hash"] = content_hash(descriptive(row))
        enrolment = _Enrolment(
            (1, len(self.created)),
            row,
            CurrentState(last.status, last.on, row["current_slot_key"], frozenset()),
            1,
            new=True,
        )
        self.created.append(enrolment)
        self._index(enrolment)
        self._add_events(enrolment, None, plan.new_steps, line)
        run.count("inserted")
        run.count("loaded")

    def _add_events(
        self,
        enrolment: _Enrolment,
        previous: Status | None,
        steps: tuple[Step, ...],
        line: _Line,
    ) -> None:
        history = set(enrolment.state.history)
        slot_key = enrolment.state.slot_key
        for step in steps:
            self.new_events.append(
                (
                    enrolment,
                    {
                        "seq": enrolment.next_seq,
                        "status": step.status.value,
                        "previous_status": previous.value if previous else None,
                        "event_date": step.on,
                        "slot_key": step.slot_key,
                        "recruitment_slot_id": line.slot_ids.get(step.slot_key or ""),
                        "source_kind": self.run.kind,
                        "run_id": self.run.run_id,
                        "source_line": line.line,
                        "recorded_at": self.now,
                    },
                )
            )
            enrolment.next_seq += 1
            history.add((step.status.value, step.on, step.slot_key))
            previous = step.status
            if step.status is Status.POSITIONNE:
                slot_key = step.slot_key
            self.run.count("events")
        last = steps[-1]
        enrolment.state = CurrentState(last.status, last.on, slot_key, frozenset(history))

    def prepare(self) -> Callable[[], None]:
        """Draw the new enrolments' ids and render the batch's rows (this thread, which
        holds the file's parsing too), and return the writing: I/O only, which can run
        in the writer thread (`Run.write_behind`) while the next lines are parsed."""
        conn, t, events = self.run.conn, self.owner.t, self.owner.events
        ids = _new_ids(conn, t, len(self.created))
        for enrolment, new_id in zip(self.created, ids, strict=True):
            enrolment.row["id"] = new_id
        created = PreparedRows(
            conn, t, _INSERTED, [[e.row[c] for c in _INSERTED] for e in self.created]
        )
        changed = [
            {"id": e.row["id"], **{c: e.row[c] for c in _UPDATED}} for e in self.touched.values()
        ]
        event_columns = ("enrolment_id", *_EVENT_COLUMNS)
        new_events = PreparedRows(
            conn,
            events,
            event_columns,
            [[e.row["id"], *(event[c] for c in _EVENT_COLUMNS)] for e, event in self.new_events],
        )

        def write() -> None:
            write_rows(conn, created)
            bulk_update(conn, t, changed)
            write_rows(conn, new_events)

        return write


def _new_ids(conn: sa.Connection, table: sa.Table, count: int) -> list[int]:
    """`count` fresh ids for `table`, so that events can point at enrolments written in
    the same batch. PostgreSQL: the column's own sequence. SQLite: past the largest id —
    safe because the run's transaction already holds SQLite's single write lock (the run
    wrote its events or quarantine rows, or takes the lock here)."""
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        statement = sa.text(read_sql("kairos/new_ids_postgresql.sql"))
        drawn = conn.execute(statement, {"table": table.name, "n": count}).scalars()
        return [int(v) for v in drawn]
    # An UPDATE that changes nothing takes SQLite's write lock before the MAX is read.
    conn.execute(table.update().where(sa.false()).values(id=table.c.id))
    top = conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + count))
