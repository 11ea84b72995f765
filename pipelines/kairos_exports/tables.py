"""Table handles for the loaders: reflected, with the project's timestamp convention.

The core model stores timestamps on SQLite as ISO text in UTC with a fixed format
(core.history.db_timestamp), so that as-of queries compare text correctly. The
loaders here write through SQLAlchemy Core on reflected tables, whose SQLite DATETIME
type would use another text format: `UtcTimestamp` replaces it on every timestamp
column so both writers agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcTimestamp(TypeDecorator[datetime]):
    """DateTime(timezone=True) on PostgreSQL; db_timestamp()'s text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        assert isinstance(value, datetime)
        # Same text as core.history.db_timestamp.
        return value.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))


def reflect_tables(engine: Engine, names: list[str]) -> dict[str, sa.Table]:
    """Reflect `names`, with `UtcTimestamp` on every DATETIME / TIMESTAMP column."""
    metadata = sa.MetaData()
    inspector = sa.inspect(engine)
    for name in names:
        overrides: list[sa.Column[Any]] = [
            sa.Column(column["name"], UtcTimestamp(), nullable=column["nullable"])
            for column in inspector.get_columns(name)
            if isinstance(column["type"], sa.DateTime)
        ]
        # resolve_fks=False: referenced tables are reflected only when asked for, with
        # their own overrides, never implicitly without them.
        sa.Table(name, metadata, *overrides, autoload_with=engine, resolve_fks=False)
    return dict(metadata.tables)
