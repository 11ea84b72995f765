"""SMTP for kairos-sync: the relay's settings and the one client that sends through it.

The Region's report (quality_checks/mail.py) and the failure notices (pipelines/notify.py)
both send through `deliver`, so there is one mail setup and one set of TLS and login rules.

SMTP settings, first found wins:
1. environment: KAIROS_SMTP_HOST (required), KAIROS_SMTP_PORT (25, or 587 with STARTTLS),
   KAIROS_SMTP_USER, KAIROS_SMTP_PASSWORD, KAIROS_SMTP_STARTTLS (1/true/yes),
   KAIROS_SMTP_FROM, KAIROS_SMTP_CAFILE (extra CA to trust, e.g. an internal relay);
2. the Airflow connection `smtp_default`, when Airflow is importable (imported lazily, here
   and only here, so the CLI never needs Airflow).
Secrets are never logged: the log says the host, the port and whether a user is set.
"""

from __future__ import annotations

import importlib
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from core import settings

log = logging.getLogger(__name__)
_TRUE = {"1", "true", "yes", "on", "oui"}


class MailError(RuntimeError):
    """Nothing was sent: sending failed or cannot start (no settings, no recipients, SMTP
    error, a report that fails verification, a sending of unknown outcome)."""


class SmtpError(MailError):
    """The SMTP server could not be reached, or refused the login or the message."""


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
    env = dict(settings.environment() if env is None else env)
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


def deliver(
    settings: SmtpSettings, message: EmailMessage, to: tuple[str, ...]
) -> dict[str, tuple[int, bytes]]:
    """Send through the relay of `settings` (STARTTLS, login); returns the refused
    recipients. The one SMTP client of the project: the report and the failure notices
    (pipelines/notify.py) both go through it. Once the server has accepted the message it
    is sent: an error while saying goodbye (QUIT) changes nothing."""
    try:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpError(f"SMTP sending via {settings.describe()} failed: {exc}") from exc
    try:
        smtp.ehlo()
        if settings.starttls:
            context = ssl.create_default_context(cafile=settings.cafile)
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        return smtp.send_message(message, from_addr=settings.sender, to_addrs=list(to))
    except (OSError, smtplib.SMTPException) as exc:
        # The exception text never holds the password (smtplib does not echo it).
        raise SmtpError(f"SMTP sending via {settings.describe()} failed: {exc}") from exc
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
