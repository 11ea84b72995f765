"""Database access: engine from a URL, default embedded SQLite, Alembic migrations.

`--db` defaults to KAIROS_DATABASE_URL, else the embedded SQLite file under var/.
The same schema runs on PostgreSQL and SQLite; the migrations live in sql/migrations.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core import settings
from core.copy_format import copy_text
from core.settings import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql"
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "var" / "kairos.sqlite"


def default_database_url() -> str:
    """KAIROS_DATABASE_URL if set, else the embedded SQLite file."""
    url = settings.get("KAIROS_DATABASE_URL")
    if url:
        return url
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


class DatabaseUrlError(ValueError):
    """The database URL cannot be parsed. The message never repeats the URL: it may hold a
    password."""


def _given_or_default(url: str | None) -> str:
    """What get_engine would connect to, without creating var/ as a side effect."""
    return url or settings.get("KAIROS_DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"


def describe_database(url: str | None = None) -> str:
    """Where `url` (or the default) points, for messages: `host:port/database`, or the
    SQLite file. Never the user or the password."""
    try:
        parsed = make_url(_given_or_default(url))
    except (ValueError, ArgumentError):
        return "the database URL given (unparseable)"
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host or 'localhost'}{port}/{parsed.database or ''}"


def database_password(url: str | None = None) -> str | None:
    """The password in `url` (or the default), to mask it in any text shown."""
    try:
        password = make_url(_given_or_default(url)).password
    except (ValueError, ArgumentError):
        return None
    return str(password) if password else None


def get_engine(url: str | None = None) -> Engine:
    """An engine for `url` (or the default). SQLite gets foreign keys and WAL on."""
    url = url or default_database_url()
    try:
        make_url(url)
    except (ValueError, ArgumentError) as exc:
        raise DatabaseUrlError(
            f"invalid database URL ({type(exc).__name__}; the URL is not repeated as it may"
            " hold a password): expected dialect+driver://user:password@host:port/database"
        ) from None
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def read_sql(relative_path: str) -> str:
    """Text of a SQL file under sql/ (queries live in files, not in Python strings)."""
    return (SQL_DIR / relative_path).read_text(encoding="utf-8")


def named_statements(script: str) -> list[tuple[str | None, str]]:
    """Split a SQL file into (name, statement); `-- name: x` comments name the next one."""
    result: list[tuple[str | None, str]] = []
    name: str | None = None
    buffer: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith("-- name:"):
            name = stripped.removeprefix("-- name:").strip()
            continue
        if stripped.startswith("--") or not stripped:
            continue
        buffer.append(line)
        if stripped.endswith(";"):
            result.append((name, "\n".join(buffer).rstrip().rstrip(";")))
            name, buffer = None, []
    if buffer:
        result.append((name, "\n".join(buffer)))
    return result


def strip_comments(sql: str) -> str:
    """The SQL without its whole-line `--` comments (the files keep comments on own lines).

    SQLAlchemy's `text()` does not parse comments: a `:name` written in one becomes a bind
    parameter, which SQLite then counts against the placeholders it really sees.
    """
    return "\n".join(
        line for line in sql.splitlines() if not line.lstrip().startswith("--")
    ).strip()


@cache
def _fragments() -> dict[str, str]:
    """sql/fragments/*.sql: the definitions the rules, the headline figures and the exports
    share ("recruiting on :as_of", "open on :as_of"), so that they cannot drift apart."""
    return {
        path.stem: strip_comments(path.read_text(encoding="utf-8")).strip()
        for path in sorted((SQL_DIR / "fragments").glob("*.sql"))
    }


def splice_fragments(query: str) -> str:
    """Replace each `{name}` of sql/fragments/name.sql by that shared definition (in
    parentheses); a fragment may use another one.

    str.replace, not str.format: Great Expectations owns the `{batch}` placeholder.
    """
    fragments = _fragments()
    for _ in range(len(fragments) + 1):  # nested fragments: until nothing is left to splice
        spliced = query
        for name, fragment in fragments.items():
            spliced = spliced.replace(f"{{{name}}}", f"(\n{fragment}\n)")
        if spliced == query:
            return query
        query = spliced
    raise ValueError("sql/fragments: a fragment includes itself")


def read_query(relative_path: str) -> str:
    """A file of sql/ without its comments (see `strip_comments`) and with the shared
    fragments spliced in, ready for `text()`."""
    return splice_fragments(strip_comments(read_sql(relative_path)))


def execute_trigger_script(conn: Connection, script: str) -> None:
    """Run a trigger script of sql/ (`CREATE TRIGGER`, preceded on PostgreSQL by the
    `CREATE FUNCTION … $$ … $$;` it executes). A PL/pgSQL body holds semicolons, so the
    PostgreSQL form is split after the body, not on every semicolon; SQLite's is one
    statement."""
    if conn.dialect.name == "postgresql":
        # psycopg2 formats every statement it is given parameters for, and SQLAlchemy always
        # gives some: a literal % (RAISE's placeholder) must reach it doubled.
        script = script.replace("%", "%%")
        function, _, create = script.partition("$$;")
        conn.exec_driver_sql(function + "$$")
        conn.exec_driver_sql(create)
    else:
        conn.exec_driver_sql(script)


# PostgreSQL advisory lock key of schema migrations (any constant; the run locks of
# core/history.py hash their own names, so they never meet this one).
MIGRATION_LOCK_KEY = 0x6B616972_6D696772  # "kair" "migr"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to `revision` with Alembic (idempotent).

    Serialised across processes: two unserialised upgrades of a fresh database both see no
    `alembic_version` and both create the tables ("table run_ledger already exists"). On
    PostgreSQL the upgrade holds a transaction-level advisory lock; on SQLite an exclusive
    lock on the file `<database>.migrate.lock` (it waits as long as the other upgrade runs,
    where the database's own busy timeout would give up after 30 s), then the database's
    write lock (`BEGIN IMMEDIATE`). Both are taken before the schema version is read: the
    second process waits, then finds the schema up to date."""
    from alembic import command

    config = _alembic_config()
    with _sqlite_file_lock(engine), engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(%(key)s)", {"key": MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive `flock` beside a SQLite database file (nothing for other databases)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SchemaNotCurrentError(RuntimeError):
    """The database schema is not the one this code needs (never migrated, or older)."""


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SQL_DIR / "migrations"))
    return config


def head_revision() -> str:
    """The schema revision this code needs (the newest migration in sql/migrations)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the repository always ships migrations
        raise RuntimeError("no migration in sql/migrations")
    return head


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not this code's.

    Migrating is one explicit step (`kairos-sync migrate`, the DAG's `migrate` task), not a
    side effect of every step: the steps only check, so a fresh or older database is named
    with what to run instead of being changed under a running night."""
    current, needed = schema_revision(engine), head_revision()
    if current != needed:
        where = describe_database(engine.url.render_as_string(hide_password=True))
        state = "has no schema" if current is None else f"is at revision {current}"
        raise SchemaNotCurrentError(
            f"database {where} {state}; this code needs revision {needed}: "
            "run `kairos-sync migrate` (in Airflow: the DAG's migrate task) first"
        )


class PreparedRows:
    """Rows for one table, made ready to send: on PostgreSQL already rendered as `COPY`
    text, so that sending them (`write_rows`, possibly from another thread) is I/O only."""

    def __init__(
        self,
        conn: Connection,
        target: Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        self.target = target
        self.columns = list(columns)
        self.count = len(rows)
        self.postgres = conn.dialect.name == "postgresql"
        self.rows: Sequence[Sequence[Any]] = () if self.postgres else rows
        self.text = copy_text(rows) if self.postgres and rows else None


def write_rows(conn: Connection, prepared: PreparedRows) -> None:
    """Insert prepared rows in one statement.

    PostgreSQL: `COPY … FROM STDIN` on the connection's own transaction — one round trip
    for the batch, where an INSERT a row costs one each (docs/performance.md). SQLite:
    `executemany` through the table's column types (in-process, no round trip to save).
    Values must be what the columns take (str, int, bool, date, aware datetime)."""
    if not prepared.count:
        return
    columns = prepared.columns
    if not prepared.postgres:
        conn.execute(
            prepared.target.insert(), [dict(zip(columns, r, strict=True)) for r in prepared.rows]
        )
        return
    assert prepared.text is not None
    copy_in(conn, prepared.target.name, columns, prepared.text)


def copy_in(conn: Connection, table: str, columns: Sequence[str], text: io.StringIO) -> None:
    """`COPY table (columns) FROM STDIN` of COPY `text`, on the connection's transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", text, size=1 << 20)
    finally:
        cursor.close()


def bulk_insert(conn: Connection, target: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (mappings with the same keys) into `target` in one statement
    (`write_rows`)."""
    if rows:
        columns = list(rows[0])
        values = [[row[c] for c in columns] for row in rows]
        write_rows(conn, PreparedRows(conn, target, columns, values))


def bulk_update(conn: Connection, target: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the columns of `rows` (mappings with the same keys, `id` among them) on the rows
    of `target` with that `id`.

    PostgreSQL: the rows are copied into a temporary table, then one `UPDATE … FROM` —
    an `executemany` UPDATE would be a round trip a row. SQLite: `executemany`."""
    if not rows:
        return
    columns = list(rows[0])
    if conn.dialect.name != "postgresql":
        statement = (
            target.update()
            .where(target.c.id == bindparam("b_id"))
            .values({c: bindparam(f"b_{c}") for c in columns if c != "id"})
        )
        conn.execute(statement, [{f"b_{c}": row[c] for c in columns} for row in rows])
        return
    table = target.name
    temp = f"bulk_update_{table}"
    assignments = ", ".join(f"{c} = s.{c}" for c in columns if c != "id")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} ON COMMIT DROP"
        f" AS SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
    )
    conn.exec_driver_sql(f"TRUNCATE {temp}")
    copy_in(conn, temp, columns, copy_text([[row[c] for c in columns] for row in rows]))
    conn.exec_driver_sql(
        f"UPDATE {table} AS t SET {assignments} FROM {temp} AS s WHERE t.id = s.id"
    )
