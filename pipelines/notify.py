"""Failure notices of the DAG runs: one short e-mail per failed night, a digest per backfill.

What the on-call engineer needs in the mail, not in a log: which source failed, the first
line of its error, the run's address in the Airflow UI and the time in Europe/Paris.

* Each source task that fails records what failed (`record_task_failure`, the tasks'
  ``on_failure_callback``, which runs in the task's process with the exception) in the
  alerts spool ``<KAIROS_ALERTS_DIR>/<dag_id>/<run_id>/`` (default var/alerts).
* The DAG's ``on_failure_callback`` (`notify_run_failure`) reads that spool and sends one
  notice for the run: every failed source in it, however many tasks failed.
* A backfill replays many nights: its failed runs are added to the backfill's digest
  instead (`notify_run_failure` spools them), and the backfill's last run sends one digest
  (`send_backfill_digest`, the sync DAG's last task).

The SMTP settings and client are the report's (core/smtp.py: ``KAIROS_SMTP_*`` environment
variables, else the Airflow connection ``smtp_default``), so there is one mail setup and one
SMTP client. The
recipients are ``KAIROS_ALERT_TO`` (comma-separated); unset = the notice is logged only.
A notice that cannot be sent is logged, never raised: a callback error would hide the
original failure.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import smtplib
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from core import settings
from core.db import PROJECT_ROOT

if TYPE_CHECKING:
    from core.smtp import SmtpSettings

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
DIGEST_NAME = "backfill-digest.jsonl"


def alert_recipients(env: Mapping[str, str] | None = None) -> list[str]:
    env = settings.environment() if env is None else env
    return [a.strip() for a in env.get("KAIROS_ALERT_TO", "").split(",") if a.strip()]


def alerts_dir() -> Path:
    return settings.path("KAIROS_ALERTS_DIR", PROJECT_ROOT / "var" / "alerts")


def _safe(part: str) -> str:
    """A run id as a folder name (run ids hold ':' and '+', never a path of their own)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", part)[:200] or "_"


def _run_folder(dag_id: str, run_id: str, root: Path | None = None) -> Path:
    return (root or alerts_dir()) / _safe(dag_id) / _safe(run_id)


def airflow_base_url() -> str | None:
    """The UI's address (``[api] base_url``), for links; None when not configured."""
    value = settings.get("AIRFLOW__API__BASE_URL")
    if not value:
        try:
            from airflow.configuration import conf

            value = conf.get("api", "base_url", fallback=None)
        except Exception:  # outside Airflow: no link, the notice still goes out
            value = None
    return value.rstrip("/") if value else None


def run_url(dag_id: str, run_id: str, base_url: str | None) -> str:
    from urllib.parse import quote

    if not base_url:
        return f"(set [api] base_url for a link) DAG {dag_id}, run {run_id}"
    return f"{base_url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def first_line(error: object) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    name = type(error).__name__ if isinstance(error, BaseException) else ""
    return f"{name}: {line}"[:300] if name else line[:300]


def paris_time(moment: datetime.datetime | None = None) -> str:
    when = moment or datetime.datetime.now(tz=datetime.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(PARIS).strftime("%Y-%m-%d %H:%M %Z")


# --------------------------------------------------------------------------- per task


def record_task_failure(context: Mapping[str, Any], *, root: Path | None = None) -> None:
    """A source task's ``on_failure_callback``: what failed, for the run's notice."""
    try:
        ti = context.get("ti") or context.get("task_instance")
        dag_id = str(getattr(ti, "dag_id", None) or context.get("dag_id") or "?")
        run_id = str(context.get("run_id") or getattr(ti, "run_id", "?"))
        task_id = str(getattr(ti, "task_id", "?"))
        map_index = int(getattr(ti, "map_index", -1) or -1)
        source = context.get("source_name") or getattr(ti, "rendered_map_index", None)
        if not source:
            source = "all sources" if map_index < 0 else f"map index {map_index}"
        record = {
            "source": str(source),
            "task": task_id,
            "error": first_line(context.get("exception") or "unknown error"),
            "at": paris_time(),
        }
        folder = _run_folder(dag_id, run_id, root)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{_safe(task_id)}-{map_index}.json"
        (folder / name).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    except Exception:  # never hide the task's own failure
        log.exception("could not record the task failure for the run's notice")


def recorded_failures(
    dag_id: str, run_id: str, *, root: Path | None = None
) -> list[dict[str, Any]]:
    folder = _run_folder(dag_id, run_id, root)
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            records.append({"source": "?", "task": path.stem, "error": "unreadable record"})
    return records


# --------------------------------------------------------------------------- per run


def failure_message(
    context: Mapping[str, Any],
    *,
    failures: Sequence[Mapping[str, Any]] | None = None,
    base_url: str | None = None,
) -> tuple[str, str]:
    """Subject and body of a run's notice, from an Airflow callback context (any subset)
    and the failures its tasks recorded."""
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or str(context.get("dag_id", "?"))
    dag_run = context.get("dag_run")
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "?"))
    reason = str(context.get("reason") or "task failure")
    failures = list(failures or [])
    sources = sorted({str(f["source"]) for f in failures})
    night = _night_of(context)
    what = f"source(s) {', '.join(sources)}" if sources else reason
    lines = [
        f"The run of {dag_id} for the night of {night} failed: {what}.",
        f"Time (Europe/Paris): {paris_time()}",
        f"Run in the Airflow UI: {run_url(dag_id, run_id, base_url)}",
        "",
    ]
    for failure in failures:
        lines.append(f"- {failure['source']}, task {failure['task']}: {failure['error']}")
    if not failures:
        ti = context.get("ti") or context.get("task_instance")
        if ti is not None:
            lines.append(f"- last task: {getattr(ti, 'task_id', '?')} ({reason})")
    lines += [
        "",
        "Sources that loaded are in the database; a failed load left its ledger row "
        "(run_ledger) marked 'failed' with the error. Details: the task logs of this run.",
    ]
    label = ", ".join(sources) if sources else reason
    return f"[kairos-sync] {dag_id} failed for {night}: {label}", "\n".join(lines)


def _night_of(context: Mapping[str, Any]) -> str:
    dag_run = context.get("dag_run")
    moment = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    moment = moment or getattr(dag_run, "run_after", None)
    if isinstance(moment, datetime.datetime):
        when = moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
        return when.astimezone(PARIS).date().isoformat()
    return str(moment or "?")


def _run_type(context: Mapping[str, Any]) -> str:
    run_type = getattr(context.get("dag_run"), "run_type", None) or context.get("run_type")
    return str(getattr(run_type, "value", run_type) or "")


def notify_run_failure(
    context: Mapping[str, Any],
    *,
    settings: SmtpSettings | None = None,
    recipients: Sequence[str] | None = None,
    root: Path | None = None,
) -> bool:
    """The DAG's failure callback: send the run's notice (True when sent), or, for a
    backfill run, add it to the backfill's digest. Never raises (module docstring)."""
    try:
        dag_id = getattr(context.get("dag"), "dag_id", None) or str(context.get("dag_id", "?"))
        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?"))
        failures = recorded_failures(dag_id, run_id, root=root)
        subject, body = failure_message(context, failures=failures, base_url=airflow_base_url())
        log.error("%s\n%s", subject, body)
        if _run_type(context) == "backfill":
            # The run's last task put its tasks' failures in the digest already; only a run
            # that failed without any (a timeout) is added here, for the next digest.
            if not failures:
                _add_to_digest(dag_id, {"run_id": run_id, "subject": subject, "body": body}, root)
            log.warning("backfill run: notice in the backfill's digest, not sent alone")
            forget_run(dag_id, run_id, root=root)
            return False
    except Exception:
        log.exception("could not build the failure notice")
        return False
    sent = _send(subject, body, settings=settings, recipients=recipients)
    forget_run(dag_id, run_id, root=root)
    return sent


def forget_run(dag_id: str, run_id: str, *, root: Path | None = None) -> None:
    """The run's failure records, once its notice is out (or in a digest)."""
    import shutil

    shutil.rmtree(_run_folder(dag_id, run_id, root), ignore_errors=True)


def _add_to_digest(dag_id: str, entry: Mapping[str, Any], root: Path | None) -> None:
    folder = (root or alerts_dir()) / _safe(dag_id)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / DIGEST_NAME).open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def send_backfill_digest(
    dag_id: str,
    *,
    run_id: str,
    logical_date: datetime.datetime | None = None,
    failures: Sequence[Mapping[str, Any]] = (),
    runs_left: int,
    settings: SmtpSettings | None = None,
    recipients: Sequence[str] | None = None,
    root: Path | None = None,
) -> int:
    """Called by each backfill run's last task: add this run's `failures`, and when no run
    of the backfill is left (`runs_left` == 0) send every failed night in one e-mail.
    Returns how many failed nights the digest sent held (0: nothing sent)."""
    if failures:
        context = {"dag_id": dag_id, "run_id": run_id, "logical_date": logical_date}
        subject, body = failure_message(context, failures=failures, base_url=airflow_base_url())
        _add_to_digest(dag_id, {"run_id": run_id, "subject": subject, "body": body}, root)
    if runs_left > 0:
        return 0
    path = (root or alerts_dir()) / _safe(dag_id) / DIGEST_NAME
    if not path.is_file():
        return 0
    entries: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            entries[str(entry["run_id"])] = entry  # the run's callback may add it twice
    parts = [f"{e['subject']}\n\n{e['body']}" for e in entries.values()]
    subject = f"[kairos-sync] {dag_id}: backfill ended, {len(entries)} night(s) failed"
    separator = "\n\n" + "-" * 60 + "\n\n"
    body = f"{len(entries)} night(s) of the backfill failed.\n\n" + separator.join(parts)
    _send(subject, body, settings=settings, recipients=recipients)
    path.unlink(missing_ok=True)  # sent or logged: the next backfill starts a new digest
    return len(entries)


def _send(
    subject: str,
    body: str,
    *,
    settings: SmtpSettings | None,
    recipients: Sequence[str] | None,
) -> bool:
    to = list(recipients) if recipients is not None else alert_recipients()
    if not to:
        log.warning("KAIROS_ALERT_TO is not set: failure notice logged, not e-mailed")
        return False
    try:
        if settings is None:
            from core.smtp import resolve_settings

            settings = resolve_settings()
        send_mail(settings, to, subject, body)
    except (OSError, smtplib.SMTPException, RuntimeError) as exc:  # MailError: SMTP, settings
        log.error("could not send the failure notice to %s: %s", ", ".join(to), exc)
        return False
    return True


def send_mail(settings: SmtpSettings, recipients: Sequence[str], subject: str, body: str) -> None:
    """A plain-text message through the SMTP client of the report (core/smtp.py)."""
    from core.smtp import deliver

    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    deliver(settings, message, tuple(recipients))


def on_dag_failure(context: Any) -> None:
    """Both DAGs' ``on_failure_callback`` (Airflow's callback type: context in, nothing out)."""
    notify_run_failure(context)


def on_task_failure(context: Any) -> None:
    """The sync DAG's tasks' ``on_failure_callback``: what failed, for the run's notice."""
    record_task_failure(context)
