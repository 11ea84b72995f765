"""The Region's report: content section by section (lxml.html), CSV, and the e-mail sent to
a real SMTP server on loopback (aiosmtpd), plain and with STARTTLS + authentication.

The personal-data test loads the exports engineer's fixtures (names, e-mails, phones,
job-seeker numbers, account managers) through the real loader, then scans every byte
that leaves: the files on disk and the message received by the SMTP server.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from kairos_export_fixtures import (
    FIXTURES_DIR,
    PSEUDONYM_KEY,
    SESSION_A,
    SESSION_M,
    SIRET_A,
    SIRET_M,
    personal_data,
)
from quality_data import AS_OF, OF_A, OF_B, QualityData, days

from core.config import parse_config
from pipelines.kairos_exports.ingest import ingest_export
from quality_checks.mail import MailError, SmtpSettings, send_report
from quality_checks.report import build_report, neutralise, write_report
from quality_checks.rules import load_rules

RECIPIENTS = ["qualite@region.example", "offre@carif.example"]
CONFIG = parse_config(
    {"sources": {"test": {"report": {"recipients": RECIPIENTS}}, "other": {}}}, "<test>"
)


def _scenario(data: QualityData) -> None:
    """Two checks a week apart: one session stays blocked, one is fixed, one appears; a
    KAIROS modalities export covered the source 'test' before each, none covered 'other'."""
    data.kairos_export(days(-7))
    data.organisation(OF_A, "Organisme Alpha", "28140000014")
    data.organisation(OF_B, "Institut Beta", "76310000031")
    data.session(
        carif_session_numero="S-BLOCKED",
        intitule="Titre pro gestionnaire de paie",
        dispensateur_siret=OF_B,
        dispensateur_raison_sociale="Institut Beta",
        mandataire_siret=OF_A,
        place_city="Lisieux",
        place_postal_code="14100",
        funded_places_total=15,
        funded_places_lheo=15,
        action_url="https://www.offre-exemple.test/formation/S-BLOCKED",
    )
    fixed = data.session(carif_session_numero="S-FIXED")
    data.session(carif_session_numero="S-UNVERIFIED", source="other")
    data.session(
        carif_session_numero='=HYPERLINK("http://x")',
        intitule="<b>injection</b>",
        action_url="javascript:alert(1)",
    )
    build_report(data.url, days(-7), Path(data.url.rsplit("/", 1)[-1] + "-unused"))
    data.slot(fixed, "ico", starts_on=days(3))
    data.session(carif_session_numero="S-NEW", etat_recrutement=1, debut=days(2))
    data.kairos_export(AS_OF)


@pytest.fixture
def data(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QualityData]:
    monkeypatch.chdir(tmp_path)  # the first report of _scenario goes to a scratch dir
    db = QualityData(db_url)
    yield db
    db.dispose()


def test_report_sections(data: QualityData, tmp_path: Path) -> None:
    _scenario(data)
    out = tmp_path / "rapport"
    written = build_report(data.url, AS_OF, out)
    page = lxml.html.parse(str(written.html_path)).getroot()

    kpi = {
        td.get("data-kpi"): td.text_content().split()[0] for td in page.xpath("//td[@class='kpi']")
    }
    # 5 sessions synchronised, all recruiting; blocked: S-BLOCKED, the injected one, S-NEW;
    # S-UNVERIFIED has no open modality either, but no KAIROS export covered its source.
    assert kpi == {
        "current": "5",
        "recruiting": "5",
        "blocked": "3",
        "unverified": "1",
        "share": "60,0",
    }

    rows = {tr.get("data-rule"): tr for tr in page.xpath("//table[@id='table-regles']/tbody/tr")}
    assert set(rows) == {rule.id for rule in load_rules()}
    headline = [c.text_content().strip() for c in rows["no_open_recruitment_modality"]]
    # flags, sessions, new since last check, resolved since last check
    assert headline[3:] == ["4", "4", "1", "1"]

    blocked = {
        tr.get("data-session"): tr.text_content()
        for tr in page.xpath("//table[@id='table-bloquees']/tbody/tr")
    }
    assert set(blocked) == {"S-BLOCKED", "S-NEW", '=HYPERLINK("http://x")'}
    unverified = page.xpath("//table[@id='table-non-verifiees']/tbody/tr")
    assert [tr.get("data-session") for tr in unverified] == ["S-UNVERIFIED"]
    assert "KAIROS non vérifié" in unverified[0].text_content()
    text = " ".join(blocked["S-BLOCKED"].split())
    for expected in (
        "Titre pro gestionnaire de paie",
        "Institut Beta",
        OF_B,
        "N° DA 76310000031",
        "Organisme Alpha",
        OF_A,
        "N° DA 28140000014",
        "Lisieux (14100)",
        "15",
    ):
        assert expected in text, expected
    # Autoescaped: the injected title is text, not markup.
    assert "<b>injection</b>" in blocked['=HYPERLINK("http://x")']
    # The offer's page is linked when it is a web address, never otherwise.
    links = {
        tr.get("data-session"): [a.get("href") for a in tr.iter("a")]
        for tr in page.xpath("//table[@id='table-bloquees']/tbody/tr")
    }
    assert links["S-BLOCKED"] == ["https://www.offre-exemple.test/formation/S-BLOCKED"]
    assert links['=HYPERLINK("http://x")'] == [] and links["S-NEW"] == []

    summary = page.get_element_by_id("evolution-resume").text_content()
    assert "comparé" not in summary and "09/03/2026" in summary
    new = page.xpath("//table[@id='table-nouveaux']/tbody/tr")
    resolved = page.xpath("//table[@id='table-resolus']/tbody/tr")
    assert any("S-NEW" in tr.text_content() for tr in new)
    assert any("S-FIXED" in tr.text_content() for tr in resolved)

    for img in page.xpath("//img"):
        assert img.get("alt") and len(img.get("alt")) > 20
        assert (out / img.get("src")).is_file()
    email_page = lxml.html.parse(str(written.email_html_path)).getroot()
    assert all(i.get("src").startswith("cid:") for i in email_page.xpath("//img"))

    raw = written.csv_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with written.csv_path.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle, delimiter=";"))
    assert table and table[0]["regle"]
    sessions = {row["numero_session"] for row in table}
    assert '\'=HYPERLINK("http://x")' in sessions  # neutralised for spreadsheets
    assert not any(v.startswith(("=", "+", "-", "@")) for row in table for v in row.values())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+33", "'+33"),
        ("-2", "'-2"),
        ("@SUM", "'@SUM"),
        ("ok", "ok"),
        (None, ""),
        (dt.date(2026, 3, 16), "2026-03-16"),
        (12, "12"),
    ],
)
def test_neutralise(value: object, expected: str) -> None:
    assert neutralise(value) == expected


# -- SMTP ------------------------------------------------------------------------------------


class Collector:
    """aiosmtpd handler keeping every envelope it receives."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load_people(db: QualityData) -> None:
    """Sessions matching the export fixtures, then the real exports with personal data."""
    db.session(carif_session_numero=SESSION_A, dispensateur_siret=SIRET_A, debut=days(-10))
    db.session(
        carif_session_numero=SESSION_M,
        dispensateur_siret=SIRET_M,
        split_reason="guichet_unique",
        debut=days(-10),
    )
    for kind, name in (
        ("adherents", "adherents_utf8_pipe.csv"),
        ("training-plans", "training_plans_utf8bom_pipe.csv"),
        ("appointments", "appointments_utf8_semicolon.csv"),
    ):
        ingest_export(
            FIXTURES_DIR / name,
            kind=kind,
            db_url=db.url,  # type: ignore[arg-type]
            pseudonym_key=PSEUDONYM_KEY,
            as_of=AS_OF,
        )


def test_report_sent_by_smtp_has_parts_and_no_personal_data(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = QualityData(sqlite_url)
    _load_people(db)
    out = tmp_path / "rapport"
    written = build_report(db.url, AS_OF, out, source="test")
    handler = Collector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=port, sender="kairos@region.example")
        sent = send_report(out, config=CONFIG, settings=settings)
    finally:
        controller.stop()
    assert sent == RECIPIENTS
    (envelope,) = handler.envelopes
    assert envelope.rcpt_tos == RECIPIENTS
    assert envelope.mail_from == "kairos@region.example"
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == written.subject
    assert message["Subject"].startswith("[KAIROS] Contrôle qualité au 16/03/2026")
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 2
    for image in images:
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
        assert image.get_content_disposition() == "inline"
    (attachment,) = [
        p for p in message.iter_attachments() if p.get_filename() == "signalements.csv"
    ]
    payload = attachment.get_payload(decode=True)
    assert payload.startswith(b"\xef\xbb\xbf") and b";" in payload.splitlines()[0]
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and "Sessions bloquées" in plain.get_content()

    # No personal data anywhere: the message (decoded parts too) and every file on disk.
    leaving = [envelope.content.decode("utf-8", "replace")]
    leaving += [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
    leaving += [payload.decode("utf-8-sig")]
    leaving += [f.read_text("utf-8", "replace") for f in out.iterdir() if f.suffix != ".png"]
    secrets = {v for v in personal_data() if len(v) >= 4}
    assert secrets
    for text in leaving:
        for value in secrets:
            assert value not in text, value
    db.dispose()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_and_authentication_then_retry_after_failure(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = QualityData(sqlite_url)
    db.session(carif_session_numero="S1")
    out = tmp_path / "rapport"
    build_report(db.url, AS_OF, out)
    password = "s3cret-Pa55word"
    settings = SmtpSettings(
        host="127.0.0.1",
        port=free_port(),
        sender="kairos@region.example",
        user="kairos",
        password=password,
        starttls=True,
    )

    # Nobody listens: the send fails, the report stays on disk, nothing is marked sent.
    caplog.set_level("DEBUG")
    with pytest.raises(MailError):
        send_report(out, recipients=RECIPIENTS, settings=settings)
    assert (out / "rapport.html").is_file() and not (out / "sent.json").exists()

    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[str, str]] = []

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        ok = auth_data.password.decode() == password
        return AuthResult(success=ok)

    handler = Collector()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=settings.port,
        tls_context=server_tls,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        retry = SmtpSettings(
            **{**{f: getattr(settings, f) for f in settings.__slots__}, "cafile": str(cert)}
        )
        assert send_report(out, recipients=RECIPIENTS, settings=retry) == RECIPIENTS
        bad = SmtpSettings(
            **{**{f: getattr(retry, f) for f in retry.__slots__}, "password": "wrong"}
        )
        with pytest.raises(MailError, match="SMTP sending"):  # resend: or "already sent"
            send_report(out, recipients=RECIPIENTS, settings=bad, resend=True)
    finally:
        controller.stop()
    assert logins[0] == ("kairos", password)
    assert len(handler.envelopes) == 1 and (out / "sent.json").is_file()
    assert password not in caplog.text and "wrong" not in caplog.text
    assert password not in repr(retry)
    db.dispose()


def test_report_cli_writes_then_resends(sqlite_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    db = QualityData(sqlite_url)
    db.session(carif_session_numero="S1")
    out = tmp_path / "r"
    runner = CliRunner()
    result = runner.invoke(
        app, ["report", "--db", db.url, "--as-of", "2026-03-16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "rapport.html").is_file() and (out / "signalements.csv").is_file()
    handler = Collector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    config = tmp_path / "sources.yaml"
    config.write_text('sources:\n  test:\n    report: {recipients: ["a@region.example"]}\n')
    env = {
        "KAIROS_SMTP_HOST": "127.0.0.1",
        "KAIROS_SMTP_PORT": str(port),
        "KAIROS_SMTP_FROM": "kairos@region.example",
    }
    try:
        resend = runner.invoke(
            app, ["report", "--send", "--out", str(out), "--config", str(config)], env=env
        )
    finally:
        controller.stop()
    assert resend.exit_code == 0, resend.output
    assert [e.rcpt_tos for e in handler.envelopes] == [["a@region.example"]]
    db.dispose()


def test_report_of_a_stored_check_run_shows_that_run_with_its_link(
    data: QualityData, tmp_path: Path
) -> None:
    """The report DAG reports the check run the nightly sync stored, not a new evaluation."""
    from sqlalchemy import text

    from quality_checks.runner import CheckRunNotFound, run_checks

    _scenario(data)
    stored = run_checks(data.url, AS_OF)
    with data.engine.connect() as conn:
        runs_before = conn.execute(text("SELECT count(*) FROM quality_check_run")).scalar_one()
    link = "https://rapports.region.example/2026-11-03/all/rapport.html"
    reference = write_report(data.url, stored, tmp_path / "reference")
    fresh = build_report(data.url, AS_OF, tmp_path / "fresh")
    again = build_report(data.url, AS_OF, tmp_path / "stored", check_run_id=stored.id, link=link)
    with data.engine.connect() as conn:
        runs_after = conn.execute(text("SELECT count(*) FROM quality_check_run")).scalar_one()
    assert runs_after == runs_before + 1  # only `fresh` evaluated the rules
    assert reference.check_run_id == stored.id
    assert again.check_run_id == stored.id != fresh.check_run_id
    # Same figures and flags as when the run was stored.
    assert again.csv_path.read_bytes() == reference.csv_path.read_bytes()
    page = lxml.html.parse(str(again.html_path)).getroot()
    assert page.xpath(f"//a[@href='{link}']")
    assert f"contrôle n° {stored.id}" in page.text_content()
    manifest = (tmp_path / "stored" / "report.json").read_text(encoding="utf-8")
    assert f"Ce rapport en ligne : {link}" in manifest
    assert (
        not lxml.html.parse(str(fresh.html_path))
        .getroot()
        .xpath("//a[contains(@href, 'rapports.region')]")
    )
    # A run of another scope or date is refused, never reported as this one.
    with pytest.raises(CheckRunNotFound, match="not 'other-source'"):
        build_report(data.url, AS_OF, tmp_path / "x", source="other-source", check_run_id=stored.id)
    with pytest.raises(CheckRunNotFound, match="as of"):
        build_report(data.url, AS_OF + dt.timedelta(days=1), tmp_path / "y", check_run_id=stored.id)
    with pytest.raises(CheckRunNotFound, match="does not exist"):
        build_report(data.url, AS_OF, tmp_path / "z", check_run_id=stored.id + 1000)
