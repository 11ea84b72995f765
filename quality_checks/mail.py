"""Send a written report by SMTP (smtplib): HTML with inline charts, CSV attached.

The report directory (report.py) is the unit of sending: `send_report(directory)` reads
its manifest, builds the message and sends it, so a failed send loses nothing and is
retried with `kairos-sync report --send --out DIR`. A successful send writes `sent.json`
(when, how many recipients) beside the report.

SMTP settings, first found wins:
1. environment: KAIROS_SMTP_HOST (required), KAIROS_SMTP_PORT (25, or 587 with STARTTLS),
   KAIROS_SMTP_USER, KAIROS_SMTP_PASSWORD, KAIROS_SMTP_STARTTLS (1/true/yes),
   KAIROS_SMTP_FROM, KAIROS_SMTP_CAFILE (extra CA to trust, e.g. an internal relay);
2. the Airflow connection `smtp_default`, when Airflow is importable (imported lazily, here
   and only here, so the CLI never needs Airflow).
Secrets are never logged: the log says the host, the port and whether a user is set.
Recipients come from config/sources.yaml (`report: {recipients: [...]}`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from pipelines.config import SourcesConfig, load_config, report_recipients
from quality_checks.report import MANIFEST_NAME

log = logging.getLogger(__name__)
SENT_NAME = "sent.json"
_TRUE = {"1", "true", "yes", "on", "oui"}


class MailError(RuntimeError):
    """Sending failed or cannot start (no settings, no recipients, SMTP error)."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or a log
    starttls: bool = False
    cafile: str | None = None
    timeout: float = 30.0

    def describe(self) -> str:
        """What may be logged: no password, not even its length."""
        auth = "with authentication" if self.user else "without authentication"
        tls = "STARTTLS" if self.starttls else "plain"
        return f"{self.host}:{self.port} ({tls}, {auth})"


def settings_from_env(env: dict[str, str] | None = None) -> SmtpSettings | None:
    env = dict(os.environ if env is None else env)
    host = env.get("KAIROS_SMTP_HOST", "").strip()
    if not host:
        return None
    starttls = env.get("KAIROS_SMTP_STARTTLS", "").strip().lower() in _TRUE
    port_text = env.get("KAIROS_SMTP_PORT", "").strip()
    try:
        port = int(port_text) if port_text else (587 if starttls else 25)
    except ValueError:
        raise MailError(f"KAIROS_SMTP_PORT must be a number, got {port_text!r}") from None
    return SmtpSettings(
        host=host,
        port=port,
        sender=env.get("KAIROS_SMTP_FROM", "").strip() or "kairos-sync@localhost",
        user=env.get("KAIROS_SMTP_USER") or None,
        password=env.get("KAIROS_SMTP_PASSWORD") or None,
        starttls=starttls,
        cafile=env.get("KAIROS_SMTP_CAFILE") or None,
    )


def settings_from_airflow(conn_id: str = "smtp_default") -> SmtpSettings | None:
    """The Airflow SMTP connection, or None when Airflow or the connection is absent."""
    base_hook: Any = None
    for module in ("airflow.sdk", "airflow.hooks.base"):  # Airflow 3, then Airflow 2
        try:
            base_hook = importlib.import_module(module).BaseHook
            break
        except (ImportError, AttributeError):
            continue
    if base_hook is None:
        return None
    try:
        conn: Any = base_hook.get_connection(conn_id)
    except Exception:  # Airflow raises its own "not found" types across versions
        log.info("no Airflow connection %s", conn_id)
        return None
    extra: dict[str, Any] = dict(conn.extra_dejson or {})
    # apache-airflow-providers-smtp: disable_tls False means STARTTLS is used.
    starttls = not bool(extra.get("disable_tls", False))
    return SmtpSettings(
        host=str(conn.host),
        port=int(conn.port or (587 if starttls else 25)),
        sender=str(extra.get("from_email") or conn.login or "kairos-sync@localhost"),
        user=conn.login or None,
        password=conn.password or None,
        starttls=starttls,
        timeout=float(extra.get("timeout", 30)),
    )


def resolve_settings() -> SmtpSettings:
    settings = settings_from_env() or settings_from_airflow()
    if settings is None:
        raise MailError(
            "no SMTP settings: set KAIROS_SMTP_HOST (and PORT, USER, PASSWORD, STARTTLS, "
            "FROM) or the Airflow connection smtp_default"
        )
    return settings


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MailError(f"{directory} holds no report ({MANIFEST_NAME} missing)") from None
    return manifest


def build_message(
    directory: Path, sender: str, recipients: tuple[str, ...] | list[str]
) -> EmailMessage:
    """multipart/mixed[ multipart/alternative[ text, related[ html, PNG… ] ], CSV ]."""
    manifest = read_manifest(directory)
    message = EmailMessage()
    message["Subject"] = manifest["subject"]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    domain = sender.rpartition("@")[2] or "kairos-sync"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(manifest.get("text") or manifest["subject"])
    html = (directory / manifest["html"]).read_text(encoding="utf-8")
    message.add_alternative(html, subtype="html")
    html_part = message.get_payload()[1]  # type: ignore[index]  # the HTML alternative
    assert isinstance(html_part, EmailMessage)
    for image in manifest["images"]:
        html_part.add_related(
            (directory / image["file"]).read_bytes(),
            maintype="image",
            subtype="png",
            cid=f"<{image['cid']}>",
            filename=image["file"],
            disposition="inline",
        )
    message.add_attachment(
        (directory / manifest["csv"]).read_bytes(),
        maintype="text",
        subtype="csv",
        filename=manifest["csv"],
    )
    return message


def _recipients(manifest: dict[str, Any], config: SourcesConfig | Path | None) -> tuple[str, ...]:
    parsed = config if isinstance(config, SourcesConfig) else load_config(config)
    return report_recipients(parsed, manifest.get("source"))


def send_report(
    directory: Path,
    *,
    config: SourcesConfig | Path | None = None,
    settings: SmtpSettings | None = None,
    recipients: tuple[str, ...] | list[str] | None = None,
) -> list[str]:
    """Send the report written in `directory`; returns the recipients. Retry-safe."""
    manifest = read_manifest(directory)
    to = tuple(recipients) if recipients is not None else _recipients(manifest, config)
    if not to:
        raise MailError("no recipients: add `report: {recipients: [...]}` to the source config")
    settings = settings or resolve_settings()
    message = build_message(directory, settings.sender, to)
    log.info("sending report %s to %d recipient(s) via %s", directory, len(to), settings.describe())
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
            smtp.ehlo()
            if settings.starttls:
                context = ssl.create_default_context(cafile=settings.cafile)
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            refused = smtp.send_message(message, from_addr=settings.sender, to_addrs=list(to))
    except (OSError, smtplib.SMTPException) as exc:
        # The exception text never holds the password (smtplib does not echo it).
        raise MailError(f"SMTP sending via {settings.describe()} failed: {exc}") from exc
    delivered = [address for address in to if address not in refused]
    (directory / SENT_NAME).write_text(
        json.dumps(
            {
                "sent_at": dt.datetime.now(dt.UTC).isoformat(),
                "recipients": len(delivered),
                "refused": len(refused),
            }
        ),
        encoding="utf-8",
    )
    return delivered


__all__ = [
    "MailError",
    "SmtpSettings",
    "build_message",
    "resolve_settings",
    "send_report",
    "settings_from_airflow",
    "settings_from_env",
]
