"""The one error path of the `kairos-sync` command line: one line on stderr, one exit code.

Every command runs inside `CommandGroup.invoke`: whatever a command raises becomes
`error: <what failed>` on stderr and the exit code of its failure class (`ExitCode`, the
table in README.md, "Exit codes"), never a Python traceback. Commands still raise
`fail(...)` themselves for usage errors they detect; typer's own usage errors (exit 2) and
Ctrl-C (exit 130) pass through untouched.

Messages name what failed without leaking: the database is named by host, port and
database (or the SQLite file), never by its URL, which may carry a password; driver texts
are reduced to their first line for connection errors (libpq never echoes the password, and
the URL's password is masked anyway) and to the class name otherwise, since they can quote
bound values. `KAIROS_TRACEBACK=1` re-raises instead, for a developer chasing a bug.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import typer
from typer.core import TyperGroup

DB_URL_KEY = "kairos_sync.db_url"  # in ctx.meta (shared by every nested context)


class ExitCode(IntEnum):
    """What a `kairos-sync` exit status means (README.md, "Exit codes")."""

    OK = 0
    DATABASE = 1  # cannot connect, role or password refused, connection lost, driver error
    BAD_INPUT = 2  # usage, bad option or URL, unknown source, refused file, source busy
    RUN_FAILED = 3  # a run started and failed (recorded failed), e.g. report not written
    NOT_SENT = 4  # the report was not e-mailed (SMTP, no settings, files not verified…)
    SENT_NOT_RECORDED = 5  # the report WAS e-mailed, but sent.json could not be written
    INTEGRITY = 6  # `integrity`: references naming rows that do not exist
    INTERRUPTED = 130  # Ctrl-C (typer's own)


def fail(message: str, code: int = ExitCode.BAD_INPUT) -> typer.Exit:
    """Print a failure to stderr; returns the Exit to raise (default: bad input)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(int(code))


def remember_db(ctx: typer.Context, value: str | None) -> str | None:
    """--db callback: keep the URL where the error path can name the database it failed on."""
    ctx.meta[DB_URL_KEY] = value
    return value


@dataclass(frozen=True, slots=True)
class Failure:
    code: ExitCode
    message: str


class CommandGroup(TyperGroup):
    """The root command group: every command's exceptions go through `classify`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exits, usage errors (exit 2): typer prints them itself
        except Exception as exc:
            from core import settings

            if settings.get("KAIROS_TRACEBACK") == "1":
                raise
            failure = classify(exc, ctx.meta.get(DB_URL_KEY))
            raise fail(failure.message, failure.code) from None


# Errors naming a path given by the operator that cannot be used as asked: bad input.
# Anything else from the file system (full, read-only, I/O error) fails the run.
_BAD_PATH_ERRNOS = frozenset(
    {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG}
)


def classify(exc: Exception, db_url: str | None) -> Failure:
    """The exit code and one-line message of an exception raised by a command."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.config import ConfigError
    from core.db import DatabaseUrlError, SchemaNotCurrentError
    from core.history import RunLockLost, RunLockTimeout
    from pipelines.kairos_exports import ExportFileError, PseudonymKeyError
    from pipelines.load import LoadError
    from quality_checks.mail import MailError, SentNotRecorded
    from quality_checks.report import ReportWriteError
    from transforms.reader import DocumentError

    bad_input = (
        ConfigError,
        DatabaseUrlError,
        DocumentError,
        ExportFileError,
        LoadError,  # refused snapshot, another load of the source holds the lock
        PseudonymKeyError,
        RunLockTimeout,
    )
    if isinstance(exc, bad_input):
        return Failure(ExitCode.BAD_INPUT, str(exc))
    if isinstance(exc, SchemaNotCurrentError):
        return Failure(ExitCode.DATABASE, str(exc))
    if isinstance(exc, SQLAlchemyError):
        return Failure(ExitCode.DATABASE, database_message(exc, db_url))
    if isinstance(exc, SentNotRecorded):
        return Failure(ExitCode.SENT_NOT_RECORDED, str(exc))
    if isinstance(exc, MailError):
        return Failure(ExitCode.NOT_SENT, str(exc))
    if isinstance(exc, RunLockLost | ReportWriteError):
        return Failure(ExitCode.RUN_FAILED, f"run failed: {exc}")
    if isinstance(exc, OSError):
        return _os_failure(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return Failure(ExitCode.RUN_FAILED, _mask(f"run failed: {type(exc).__name__}: {first}", db_url))


def _os_failure(exc: OSError) -> Failure:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.EISDIR:
        return Failure(ExitCode.BAD_INPUT, f"{where}is a directory, expected a file")
    if exc.errno in _BAD_PATH_ERRNOS:
        return Failure(ExitCode.BAD_INPUT, f"{where}{exc.strerror}")
    return Failure(
        ExitCode.RUN_FAILED, f"run failed: {where}{exc.strerror or exc} (errno {exc.errno})"
    )


def database_message(exc: Exception, db_url: str | None) -> str:
    """`database error on HOST:PORT/DB (Class: driver's first line)`: where, and why.

    Only the driver's first line for connection errors (host, port, role, "terminating
    connection…"); other driver errors by class only, since their text can quote bound
    values. The run's ledger row, when one was written, holds the rest."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from core.db import describe_database

    detail = type(exc).__name__
    orig = getattr(exc, "orig", None)
    connection = isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    if connection:
        lines = str(orig or exc).strip().splitlines()
        detail += f": {lines[0].strip()}" if lines else ""
    return _mask(f"database error on {describe_database(db_url)} ({detail})", db_url)


def _mask(message: str, db_url: str | None) -> str:
    """Whatever produced the text, the URL's password never reaches the terminal."""
    from core.db import database_password

    password = database_password(db_url)
    return message.replace(password, "***") if password else message


__all__ = [
    "DB_URL_KEY",
    "CommandGroup",
    "ExitCode",
    "Failure",
    "classify",
    "database_message",
    "fail",
    "remember_db",
]
