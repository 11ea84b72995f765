"""Failure notice for a DAG run: one short e-mail to the operations address.

Called by the DAGs' ``on_failure_callback`` (in Airflow 3 the DAG processor runs it; with
``dag.test()`` it runs in-process). The message says which DAG run failed, why, and which
task failed last; the details are in the Airflow task logs and, for loads, in the ledger
row that the loader marked ``failed`` with the error.

The SMTP settings are the report's (quality_checks/mail.py: ``KAIROS_SMTP_*`` environment
variables, else the Airflow connection ``smtp_default``), so there is one mail setup. The
recipients are ``KAIROS_ALERT_TO`` (comma-separated); unset = the notice is logged only.

A notice that cannot be sent is logged, never raised: a callback error would hide the
original failure.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_checks.mail import SmtpSettings

log = logging.getLogger(__name__)


def alert_recipients(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [a.strip() for a in env.get("KAIROS_ALERT_TO", "").split(",") if a.strip()]


def send_mail(settings: SmtpSettings, recipients: Sequence[str], subject: str, body: str) -> None:
    """A plain-text message through the report's SMTP relay (same STARTTLS/auth rules)."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        smtp.ehlo()
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context(cafile=settings.cafile))
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(message, from_addr=settings.sender, to_addrs=list(recipients))


def failure_message(context: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and body of the notice, from an Airflow callback context (any subset)."""
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or str(context.get("dag_id", "?"))
    run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?"))
    reason = str(context.get("reason") or "task failure")
    ti = context.get("ti") or context.get("task_instance")
    lines = [
        f"The Airflow run {run_id} of {dag_id} failed: {reason}.",
        "",
    ]
    if ti is not None:
        lines.append(
            f"Last task: {getattr(ti, 'task_id', '?')} (map index {getattr(ti, 'map_index', -1)})"
        )
    logical_date = context.get("logical_date")
    if logical_date is not None:
        lines.append(f"Logical date: {logical_date}")
    params = context.get("params")
    if params:
        lines.append(f"Params: {dict(params)}")
    lines += [
        "",
        "Sources that loaded are in the database; a failed load left its ledger row "
        "(run_ledger) marked 'failed' with the error. Task logs: Airflow UI, this run.",
    ]
    return f"[kairos-sync] {dag_id} failed ({run_id})", "\n".join(lines)


def notify_run_failure(
    context: Mapping[str, Any],
    *,
    settings: SmtpSettings | None = None,
    recipients: Sequence[str] | None = None,
) -> bool:
    """Send the failure notice; True when sent. Never raises (see module docstring)."""
    subject, body = failure_message(context)
    log.error("%s\n%s", subject, body)
    to = list(recipients) if recipients is not None else alert_recipients()
    if not to:
        log.warning("KAIROS_ALERT_TO is not set: failure notice logged, not e-mailed")
        return False
    try:
        if settings is None:
            from quality_checks.mail import resolve_settings

            settings = resolve_settings()
        send_mail(settings, to, subject, body)
    except (OSError, smtplib.SMTPException, RuntimeError) as exc:  # MailError: no settings
        log.error("could not send the failure notice to %s: %s", ", ".join(to), exc)
        return False
    return True
