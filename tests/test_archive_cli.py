"""`kairos-sync archive`: a past night's file put in the landing zone by hand, for a backfill.

Same layout and sidecar as the nightly fetch, so that the fetch step of a backfilled night
reuses it (and checks its sha256); a different file already archived for that night is
refused, never replaced.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.fetch import fetch_snapshot

runner = CliRunner()
NIGHT = datetime.date(2026, 11, 28)


def test_archive_then_a_backfilled_fetch_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAIROS_LANDING_ZONE", raising=False)
    received = tmp_path / "from-the-carif.xml"
    received.write_bytes(b"<lheo/>")
    # A relative landing zone (as in KAIROS_LANDING_ZONE=var/landing) is not joined twice.
    args = ["archive", str(received), "--source", "smf-normandie", "--date", NIGHT.isoformat()]
    result = runner.invoke(app, [*args, "--landing-zone", "landing"])
    assert result.exit_code == 0, result.output
    archived = tmp_path / "landing" / "smf-normandie" / NIGHT.isoformat() / received.name
    digest = hashlib.sha256(b"<lheo/>").hexdigest()
    assert archived.read_bytes() == b"<lheo/>"
    assert (archived.parent / f"{received.name}.sha256").read_text() == (
        f"{digest}  {received.name}\n"
    )
    assert f"archived: {archived}" in result.output
    # The backfill's fetch of that night (today is later) takes it, without the source.
    snapshot = fetch_snapshot(
        "smf-normandie",
        location=str(tmp_path / "nowhere"),
        logical_date=NIGHT,
        landing_zone=tmp_path / "landing",
        today=NIGHT + datetime.timedelta(days=6),
    )
    assert (snapshot.path, snapshot.sha256, snapshot.reused) == (archived, digest, True)
    # Archiving the same file again is a no-op; another file for that night is refused.
    again = runner.invoke(app, [*args, "--landing-zone", "landing"])
    assert again.exit_code == 0 and "already archived" in again.output
    other = tmp_path / "other.xml"
    other.write_bytes(b"<lheo>other</lheo>")
    args[1] = str(other)
    refused = runner.invoke(app, [*args, "--landing-zone", "landing"])
    assert refused.exit_code == 2
    assert "already holds a different snapshot" in refused.output
    assert not (archived.parent / "other.xml").exists()


def test_archive_refusals_name_what_is_wrong(tmp_path: Path) -> None:
    file = tmp_path / "o.xml"
    file.write_bytes(b"<lheo/>")
    zone = ["--landing-zone", str(tmp_path / "landing")]
    cases = {
        ("../escape", "2026-11-28"): "invalid source name '../escape'",
        ("smf-normandie", "28/11/2026"): "--date must be YYYY-MM-DD",
    }
    for (source, date), message in cases.items():
        result = runner.invoke(
            app, ["archive", str(file), "--source", source, "--date", date, *zone]
        )
        assert result.exit_code == 2 and message in result.output
    missing = runner.invoke(
        app, ["archive", str(tmp_path / "nope.xml"), "--source", "s", "--date", "2026-11-28", *zone]
    )
    assert missing.exit_code == 2 and "not a file" in missing.output
    assert not (tmp_path / "landing").exists() or not any((tmp_path / "landing").rglob("*.xml"))


def test_a_night_without_archive_names_the_archive_command(tmp_path: Path) -> None:
    from pipelines.fetch import SnapshotNotArchivedError

    with pytest.raises(SnapshotNotArchivedError) as refused:
        fetch_snapshot(
            "smf-normandie",
            location=str(tmp_path),
            logical_date=NIGHT,
            landing_zone=tmp_path / "landing",
            today=NIGHT + datetime.timedelta(days=1),
        )
    assert f"kairos-sync archive FILE --source smf-normandie --date {NIGHT}" in str(refused.value)
