"""Send a written report by SMTP (smtplib): HTML with inline charts, CSV attached.

The report directory (report.py) is the unit of sending: `send_report(directory)` reads
its manifest, builds the message and sends it, so a failed send loses nothing and is
retried with `kairos-sync report --send --out DIR`.

At most once, whatever fails:
* Nothing is sent unless every file the manifest lists exists with its size and SHA-256
  (`verify_report`): a report cut by a full disk, or mixing two runs, is refused; the
  message is built from the very bytes that were verified.
* Before connecting, `sending.json` (the manifest's digest, the check run) is written
  atomically; after the server accepted the message, `sent.json` (when, how many
  recipients, the same digest) replaces it, atomically too. A failure to write `sending.json`
  sends nothing; a failure to write `sent.json` is `SentNotRecorded` (the mail WAS sent).
* `send_report` refuses a report whose digest `sent.json` already records
  (`ReportAlreadySent`; the command says "already sent" and exits 0) and any sending while
  a `sending.json` is left, whose outcome nobody recorded (`SendingPending`). `resend=True`
  (`--resend`) sends anyway.

SMTP settings and the client: core/smtp.py (the failure notices use the same).
Recipients come from config/sources.yaml (`report: {recipients: [...]}`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from core.config import SourcesConfig, load_config, report_recipients
from core.smtp import (
    MailError,
    SmtpError,
    SmtpSettings,
    deliver,
    resolve_settings,
    settings_from_airflow,
    settings_from_env,
)
from quality_checks.publish import file_digest, write_atomic
from quality_checks.report import MANIFEST_NAME, SENDING_NAME, SENT_NAME

log = logging.getLogger(__name__)


class ReportNotVerified(MailError):
    """A file of the report is missing or is not the one its manifest lists."""


class SendingPending(MailError):
    """An earlier sending from this folder has no recorded outcome: it may have gone out."""


class ReportAlreadySent(MailError):
    """`sent.json` records this very report (same manifest digest) as sent."""


class SentNotRecorded(RuntimeError):
    """The report WAS sent, but `sent.json` could not be written (not a MailError: retrying
    would send it twice)."""


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """A report folder whose files are those its manifest lists, with their bytes."""

    directory: Path
    manifest: dict[str, Any]
    digest: str  # SHA-256 of report.json: which report a sending record is about
    contents: Mapping[str, bytes]

    @property
    def check_run_id(self) -> int:
        return int(self.manifest["check_run_id"])


def verify_report(directory: Path) -> VerifiedReport:
    """Read the manifest and every file it lists; refuse (ReportNotVerified) unless each
    one exists with the size and SHA-256 written with that check run."""
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MailError(f"{directory} holds no report ({MANIFEST_NAME} missing)") from None
    try:
        manifest = json.loads(raw)
        run_id = int(manifest["check_run_id"])
        files = manifest["files"]
        needed = [manifest["html"], manifest["csv"], *(i["file"] for i in manifest["images"])]
    except (ValueError, KeyError, TypeError):
        raise ReportNotVerified(
            f"{path}: no complete manifest with file digests (cut, or written by an earlier "
            "version): nothing sent; write the report again with --as-of"
        ) from None
    contents: dict[str, bytes] = {}
    for entry in files:
        name = str(entry.get("name", ""))
        if Path(name).name != name or name in ("", ".", ".."):
            raise ReportNotVerified(f"{path}: {name!r} is not a file name: nothing sent")
        try:
            content = (directory / name).read_bytes()
        except OSError as exc:
            raise ReportNotVerified(
                f"{directory / name}: {exc.strerror}: the report of check run {run_id} is "
                "incomplete: nothing sent; write it again with --as-of"
            ) from None
        if len(content) != entry.get("size") or file_digest(content) != entry.get("sha256"):
            raise ReportNotVerified(
                f"{directory / name}: not the file written with check run {run_id} "
                f"({len(content)} bytes, {MANIFEST_NAME} lists {entry.get('size')} and another "
                "SHA-256): nothing sent; write the report again with --as-of"
            )
        contents[name] = content
    unlisted = [name for name in needed if name not in contents]
    if unlisted:
        raise ReportNotVerified(f"{path}: {unlisted} not among its files: nothing sent")
    return VerifiedReport(directory, manifest, file_digest(raw), contents)


def build_message(
    report: VerifiedReport, sender: str, recipients: tuple[str, ...] | list[str]
) -> EmailMessage:
    """multipart/mixed[ multipart/alternative[ text, related[ html, PNG… ] ], CSV ], from
    the verified bytes (never read again from disk)."""
    manifest = report.manifest
    message = EmailMessage()
    message["Subject"] = manifest["subject"]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    domain = sender.rpartition("@")[2] or "kairos-sync"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(manifest.get("text") or manifest["subject"])
    message.add_alternative(report.contents[manifest["html"]].decode("utf-8"), subtype="html")
    html_part = message.get_payload()[1]  # type: ignore[index]  # the HTML alternative
    assert isinstance(html_part, EmailMessage)
    for image in manifest["images"]:
        html_part.add_related(
            report.contents[image["file"]],
            maintype="image",
            subtype="png",
            cid=f"<{image['cid']}>",
            filename=image["file"],
            disposition="inline",
        )
    message.add_attachment(
        report.contents[manifest["csv"]],
        maintype="text",
        subtype="csv",
        filename=manifest["csv"],
    )
    return message


def _recipients(manifest: dict[str, Any], config: SourcesConfig | Path | None) -> tuple[str, ...]:
    parsed = config if isinstance(config, SourcesConfig) else load_config(config)
    return report_recipients(parsed, manifest.get("source"))


def _record(path: Path) -> dict[str, Any] | None:
    """A sending record (sent.json, sending.json), or None when there is none."""
    try:
        record: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        # Written atomically, so this is not a half-written record: refuse, not guess.
        raise MailError(
            f"{path}: unreadable ({exc}): nothing sent; check whether the report went out, "
            "then --resend"
        ) from None
    return record


def _refuse_repeat(report: VerifiedReport) -> None:
    sent = _record(report.directory / SENT_NAME)
    if sent is not None and sent.get("manifest_sha256") == report.digest:
        raise ReportAlreadySent(
            f"already sent on {sent.get('sent_at')} to {sent.get('recipients')} recipient(s) "
            f"(check run {report.check_run_id}): nothing sent again (--resend to send it)"
        )
    pending = _record(report.directory / SENDING_NAME)
    if pending is not None:
        raise SendingPending(
            f"a sending from {report.directory} started at {pending.get('started_at')} (check "
            f"run {pending.get('check_run_id')}) has no recorded outcome: it was probably "
            f"sent. Nothing sent; check with the recipients, then --resend to send anyway"
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")


def send_report(
    directory: Path,
    *,
    config: SourcesConfig | Path | None = None,
    settings: SmtpSettings | None = None,
    recipients: tuple[str, ...] | list[str] | None = None,
    resend: bool = False,
) -> list[str]:
    """Send the report written in `directory` at most once; returns the recipients.

    Raises MailError (nothing sent: see the subclasses) or SentNotRecorded (sent, but not
    recorded). `resend` sends even a report recorded as sent or pending."""
    report = verify_report(directory)
    if not resend:
        _refuse_repeat(report)
    manifest = report.manifest
    to = tuple(recipients) if recipients is not None else _recipients(manifest, config)
    if not to:
        raise MailError("no recipients: add `report: {recipients: [...]}` to the source config")
    settings = settings or resolve_settings()
    message = build_message(report, settings.sender, to)
    about = {
        "manifest_sha256": report.digest,
        "check_run_id": report.check_run_id,
        "as_of": manifest.get("as_of"),
        "source": manifest.get("source"),
    }
    intent = directory / SENDING_NAME
    try:
        write_atomic(intent, _json({**about, "started_at": _now(), "recipients": len(to)}))
    except OSError as exc:
        raise MailError(
            f"cannot record the sending before it starts ({intent}: {exc.strerror}, errno "
            f"{exc.errno}): nothing sent"
        ) from exc
    log.info("sending report %s to %d recipient(s) via %s", directory, len(to), settings.describe())
    try:
        refused = deliver(settings, message, to)
    except SmtpError:
        intent.unlink(missing_ok=True)  # not sent: nothing pending
        raise
    delivered = [address for address in to if address not in refused]
    record = {**about, "sent_at": _now(), "recipients": len(delivered), "refused": len(refused)}
    try:
        write_atomic(directory / SENT_NAME, _json(record))
    except OSError as exc:
        raise SentNotRecorded(
            f"the report WAS sent to {len(delivered)} recipient(s), but recording it failed "
            f"({exc.filename or directory}: {exc.strerror}, errno {exc.errno}): do not send "
            f"it again; {SENDING_NAME} marks it, so --send refuses until --resend"
        ) from exc
    try:
        intent.unlink()
    except OSError as exc:  # harmless: sent.json, recording this report, is read first
        log.warning("%s could not be removed (%s)", intent, exc.strerror)
    return delivered


__all__ = [
    "SENDING_NAME",
    "SENT_NAME",
    "MailError",
    "ReportAlreadySent",
    "ReportNotVerified",
    "SendingPending",
    "SentNotRecorded",
    "SmtpError",
    "SmtpSettings",
    "VerifiedReport",
    "build_message",
    "resolve_settings",
    "send_report",
    "settings_from_airflow",
    "settings_from_env",
    "verify_report",
]
