"""Every setting kairos-sync reads from the environment, declared and read in this module.

The same code runs the CLI, the Airflow tasks and the tests, so its settings come from the
environment (never from the DAG files): this table is the one list of them, with what each
one means. Values are read when asked for, not at import, so a test or a task that sets a
variable sees it at once. Reading an undeclared name is a programming error (KeyError):
declare it here first, so that the table stays whole.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

VARIABLES: dict[str, str] = {
    "KAIROS_DATABASE_URL": "the project database (default: var/kairos.sqlite, embedded SQLite)",
    "KAIROS_SOURCES_CONFIG": "the sources file (default: config/sources.yaml)",
    "KAIROS_LANDING_ZONE": "the landing zone of fetched snapshots (default: var/landing)",
    "KAIROS_REPORTS_DIR": "where the Airflow report step writes (default: var/reports)",
    "KAIROS_REPORTS_BASE_URL": "the web address of the reports folder, for links",
    "KAIROS_ALERT_TO": "failure notice recipients, comma-separated (unset: logged only)",
    "KAIROS_ALERTS_DIR": "failed tasks' records and backfill digests (default: var/alerts)",
    "KAIROS_GX_LOG_LEVEL": "Great Expectations' log level (default: WARNING)",
    "KAIROS_TRACEBACK": "1: the CLI shows tracebacks instead of one error line",
    "KAIROS_LOAD_WORKERS": "worker processes of a load (default: by file size and cores)",
    "KAIROS_LOAD_WORK_MEM": "PostgreSQL work_mem of a load's transaction",
    "KAIROS_CHECK_CONNECTIONS": "PostgreSQL connections of a check run (default: cores, ≤ 4)",
    "KAIROS_MODALITIES_MAX_AGE_DAYS": "a KAIROS modalities export older than this is stale",
    "KAIROS_RESULT_DAYS_BEFORE_START": "days before a session's start a result is due",
    "KAIROS_PSEUDONYM_KEY": "the key of the candidates' pseudonyms (KAIROS exports)",
    "KAIROS_SMTP_HOST": "SMTP relay of the report and the notices (unset: Airflow smtp_default)",
    "KAIROS_SMTP_PORT": "SMTP port (default: 25, or 587 with STARTTLS)",
    "KAIROS_SMTP_USER": "SMTP login",
    "KAIROS_SMTP_PASSWORD": "SMTP password",
    "KAIROS_SMTP_STARTTLS": "1/true/yes: STARTTLS",
    "KAIROS_SMTP_FROM": "sender address (default: kairos-sync@localhost)",
    "KAIROS_SMTP_CAFILE": "a CA file to trust for STARTTLS",
    "AIRFLOW__API__BASE_URL": "Airflow's [api] base_url, for the links of failure notices",
}


def get(name: str, default: str | None = None) -> str | None:
    """The value of the declared variable `name`; `default` when unset or empty."""
    if name not in VARIABLES:
        raise KeyError(f"undeclared setting {name}: add it to core/settings.py VARIABLES")
    value = os.environ.get(name)
    return value if value else default


def environment() -> dict[str, str]:
    """The declared variables that are set (for readers that take a mapping, e.g. tests)."""
    return {name: os.environ[name] for name in VARIABLES if os.environ.get(name)}


def path(name: str, default: Path) -> Path:
    """A folder or file setting: the variable if set, else `default` (in the project)."""
    value = get(name)
    return Path(value) if value else default
