"""The Region report's Airflow step, as plain functions (callable without Airflow).

What one run of the report DAG does: which date, sources and check runs it reports (the
trigger form first, else the sync's asset events), then one report per source written into
`<KAIROS_REPORTS_DIR>/<as_of>/<source>/`, linked (KAIROS_REPORTS_BASE_URL) and e-mailed.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core import settings
from core.db import PROJECT_ROOT
from pipelines.orchestration import (
    PlanError,
    config_path,
    parse_form_date,
    quiet_great_expectations,
)

log = logging.getLogger(__name__)


def report_request(
    params: Mapping[str, Any],
    event_extras: Sequence[Mapping[str, Any]],
    *,
    run_date: datetime.date,
) -> dict[str, Any]:
    """What the report run does: the form's values first, else the asset events', else
    the run's date. Several events (two syncs before the report ran) are merged: all
    their sources, the latest as-of date, and sending if any of them asked for it."""
    event_sources = sorted({str(s) for e in event_extras for s in e.get("sources") or []})
    event_dates = sorted(str(e["as_of"]) for e in event_extras if e.get("as_of"))
    as_of = (
        parse_form_date(params.get("as_of"), "as_of")
        or (datetime.date.fromisoformat(event_dates[-1]) if event_dates else None)
        or run_date
    )
    send = params.get("send_email") is not False  # empty field = the default: send
    if event_extras:
        send = send and any(bool(e.get("send_email", True)) for e in event_extras)
    sources = [str(s) for s in params.get("sources") or []] or event_sources
    # The stored check runs apply when the report speaks of the events' date.
    check_runs: dict[str, int] = {}
    if event_dates and as_of.isoformat() == event_dates[-1]:
        for extra in event_extras:
            if extra.get("as_of") == event_dates[-1]:
                stored = extra.get("check_runs") or {}
                check_runs.update({str(k): int(v) for k, v in stored.items()})
    return {
        "as_of": as_of.isoformat(),
        "sources": sources,
        "send_email": send,
        "check_runs": check_runs,
    }


def reports_dir() -> Path:
    return settings.path("KAIROS_REPORTS_DIR", PROJECT_ROOT / "var" / "reports")


def report_link(as_of: str, source: str, file_name: str) -> str | None:
    """The report's address for people: `KAIROS_REPORTS_BASE_URL` (a web server over the
    reports folder) + `<as_of>/<source>/<file>`; None when no base URL is configured."""
    base = (settings.get("KAIROS_REPORTS_BASE_URL") or "").strip()
    return f"{base.rstrip('/')}/{as_of}/{source}/{file_name}" if base else None


def report_step(request: Mapping[str, Any], *, db_url: str | None = None) -> dict[str, Any]:
    """Write one report per source into `<reports>/<as_of>/<source>/` and e-mail it.

    Recipients are per source (`report.recipients` in the sources file, read by
    quality_checks.mail). A report already sent for that date and source (its `sent.json`)
    is not sent again, so re-running a date does not spam the Region; resend by hand with
    `kairos-sync report --send --out DIR`. Every source is attempted; failures are raised
    together at the end.
    """
    from core.config import load_config
    from quality_checks.mail import SENT_NAME, send_report
    from quality_checks.report import HTML_NAME, build_report

    quiet_great_expectations()

    config = load_config(config_path())
    as_of = datetime.date.fromisoformat(str(request["as_of"]))
    sources = list(request.get("sources") or sorted(config.sources))
    done: list[dict[str, Any]] = []
    errors: list[str] = []
    from pipelines.fetch import ensure_inside

    unknown = [s for s in sources if s not in config.sources]
    if unknown:
        # Names come from the trigger form or the asset event: never a path of their own.
        raise PlanError(f"unknown source(s) {unknown!r}: expected some of {sorted(config.sources)}")
    for source in sources:
        out = ensure_inside(
            reports_dir() / as_of.isoformat() / source, reports_dir(), what="report folder"
        )
        try:
            already_sent = (out / SENT_NAME).is_file()
            link = report_link(as_of.isoformat(), source, HTML_NAME)
            stored = (request.get("check_runs") or {}).get(source)
            written = build_report(
                db_url, as_of, out, source=source, check_run_id=stored, link=link
            )
            log.info(
                "report for %s as of %s (check run %s, %s): %s",
                source,
                as_of,
                written.check_run_id,
                "stored by the sync" if stored is not None else "evaluated now",
                link or written.html_path,
            )
            sent: list[str] = []
            if request.get("send_email") and not already_sent:
                sent = send_report(out, config=config)
            done.append(
                {
                    "source": source,
                    "html": str(written.html_path),
                    "check_run_id": written.check_run_id,
                    "link": link,
                    "sent_to": len(sent),
                    "already_sent": already_sent,
                }
            )
        except Exception as exc:  # one source's report must not stop the next one's
            log.exception("report for %s as of %s failed", source, as_of)
            errors.append(f"{source}: {type(exc).__name__}: {exc}")
    if errors:
        raise RuntimeError("report failed for " + "; ".join(errors))
    return {"as_of": as_of.isoformat(), "reports": done}
