"""Hostile records and CSV files: duplicate numeros, bad SIRETs, impossible
dates, missing places; KAIROS exports with wrong columns or encoding, embedded separators
and quotes; formula injection in every CSV the project writes; the mass-closing guard.
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path

import pytest
from kairos_export_fixtures import (
    PEOPLE,
    PSEUDONYM_KEY,
    SESSION_A,
    SIRET_A,
    SIRET_M,
    appointment,
    insert_session,
    write_export,
)
from lxml import etree
from quality_data import AS_OF, QualityData, days
from rel_helpers import NS23, edited, generated, ledger, query, state
from typer.testing import CliRunner

from core.db import get_engine
from pipelines.cli import app
from quality_checks.report import build_report

runner = CliRunner()
FORMULAS = ('=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _q(name: str) -> str:
    return f"{{{NS23}}}{name}"


def _load(db: str, file: Path, config: Path, source: str = "occ") -> str:
    result = runner.invoke(
        app, ["load", str(file), "--source", source, "--config", str(config), "--db", db]
    )
    assert result.exit_code == 0, result.output
    return result.output


# ----------------------------------------------------------------------------- LHEO records


def _hostile_records(root: etree._Element) -> None:
    offres = root.find(_q("offres"))
    assert offres is not None
    f = offres.findall(_q("formation"))
    duplicate = copy.deepcopy(f[0])  # same numero, later in the document: it wins
    title = duplicate.find(_q("intitule-formation"))
    assert title is not None
    title.text = "Titre du doublon (dernier)"
    offres.append(duplicate)
    for siret in f[1].iter(_q("SIRET")):
        siret.text = "00000000000000"
    for siret in f[2].iter(_q("SIRET")):
        siret.text = "   "  # blank: the schema refuses it → that formation is quarantined
    debut = f[3].find(f".//{_q('session')}/{_q('periode')}/{_q('debut')}")
    assert debut is not None
    debut.text = "20260230"  # 30 February
    for place in list(f[4].iter(_q("lieu-de-formation"))):
        parent = place.getparent()
        assert parent is not None
        parent.remove(place)


def test_hostile_records_load_flagged_or_quarantined(
    db: str, tmp_path: Path, config_file: Path
) -> None:
    good = generated(tmp_path, formations=12)
    numeros = [f.get("numero") for f in etree.parse(str(good)).getroot().iter(_q("formation"))]
    file = edited(good, tmp_path / "records.xml", _hostile_records)
    _load(db, file, config_file)
    run = ledger(db)[-1]
    assert (run.status, run.formations_read, run.formations_quarantined) == ("succeeded", 13, 1)
    # Duplicate numero: one formation row, the last occurrence's content.
    rows = query(
        db, "SELECT intitule FROM formation WHERE carif_formation_numero = :n", n=numeros[0]
    )
    assert [r.intitule for r in rows] == ["Titre du doublon (dernier)"]
    assert '"duplicate_formations": 1' in run.counts_json
    # All-zero SIRET: loaded as written, flagged invalid for the quality checks.
    zero = query(
        db,
        "SELECT dispensateur_siret_valid, mandataire_siret_valid FROM kairos_session "
        "WHERE carif_formation_numero = :n",
        n=numeros[1],
    )
    assert zero and all(not r[0] and not r[1] for r in zero)
    # Blank SIRET: schema error, quarantined with the path; nothing of it loaded.
    (quarantined,) = query(db, "SELECT record_key, path, reasons FROM quarantine")
    assert quarantined.record_key == numeros[2] and quarantined.path.endswith("/SIRET")
    assert not query(db, "SELECT id FROM formation WHERE carif_formation_numero = :n", n=numeros[2])
    # Impossible date: kept raw, precision 'invalid', no date.
    invalid = query(
        db,
        "SELECT debut, debut_precision FROM kairos_session WHERE debut_raw = '20260230'",
    )
    assert [(r.debut, r.debut_precision) for r in invalid] == [(None, "invalid")]
    # No place: the session loads with no place (missing_kairos_field flags it).
    places = query(
        db,
        "SELECT place_city, place_postal_code FROM kairos_session "
        "WHERE carif_formation_numero = :n",
        n=numeros[4],
    )
    assert places and all(r.place_city is None and r.place_postal_code is None for r in places)


def test_much_smaller_snapshot_is_refused_by_the_mass_closing_guard(
    db: str, tmp_path: Path, config_file: Path
) -> None:
    good = generated(tmp_path, formations=20)
    _load(db, good, config_file)
    before = state(db)

    def keep_three(root: etree._Element) -> None:
        offres = root.find(_q("offres"))
        assert offres is not None
        for formation in offres.findall(_q("formation"))[3:]:
            offres.remove(formation)

    small = edited(good, tmp_path / "small.xml", keep_three)
    result = runner.invoke(
        app, ["load", str(small), "--source", "occ", "--config", str(config_file), "--db", db]
    )
    assert result.exit_code == 2
    assert "snapshot refused as suspect" in result.output and "max_close_share" in result.output
    assert state(db) == before
    last = ledger(db)[-1]
    assert last.status == "failed" and "SnapshotRefused" in last.error
    # The same snapshot loads again afterwards: nothing is stuck.
    assert "noop" in _load(db, good, config_file)


# ----------------------------------------------------------------------------- KAIROS CSV


def _ingest(db: str, file: Path, kind: str) -> object:
    return runner.invoke(app, ["ingest-kairos", str(file), "--kind", kind, "--db", db])


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIROS_PSEUDONYM_KEY", PSEUDONYM_KEY.decode())


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        (
            "missing_column.csv",
            "numero_session_carif;siret_dispensateur\nS1;1\n",
            "missing required column",
        ),
        ("utf16.csv", "numero;x\n".encode("utf-16"), "UTF-16 is not supported"),
        ("binary.csv", b"\x00\x01\x02;|\x00", "binary content"),
        ("no_separator.csv", "just one column\nvalue\n", "neither '|' nor ';'"),
        ("empty.csv", b"", ""),
    ],
)
def test_refused_export_files_change_nothing(
    db: str, tmp_path: Path, key: None, name: str, content: str | bytes, fragment: str
) -> None:
    file = tmp_path / name
    if isinstance(content, str):
        file.write_text(content, encoding="utf-8")
    else:
        file.write_bytes(content)
    runs_before = ledger(db)
    result = _ingest(db, file, "appointments")
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert name in output and fragment in output and "Traceback" not in output
    runs = ledger(db)
    assert len(runs) == len(runs_before) + 1 and runs[-1].status == "failed"
    assert name in runs[-1].error
    for table in ("enrolment", "enrolment_event", "recruitment_slot", "quarantine"):
        assert query(db, f"SELECT COUNT(*) FROM {table}")[0][0] == 0


def test_embedded_separators_quotes_and_formulas_in_exports(
    db: str, tmp_path: Path, key: None
) -> None:
    """Quoted separators, doubled quotes and line breaks stay inside their cell; formula
    text from the file is stored as text and neutralised in the enrolments CSV."""
    engine = get_engine(db)
    try:
        insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    finally:
        engine.dispose()
    address = 'Bâtiment "B"; 2e étage | porte 3\nCour intérieure'
    rows = [
        appointment(PEOPLE[0], adresse=address),
        appointment(PEOPLE[1], numero_session_carif=FORMULAS[0], siret_dispensateur=SIRET_A),
    ]
    for separator in (";", "|"):
        file = write_export(
            tmp_path / f"rdv{ord(separator)}.csv", "appointments", rows, separator=separator
        )
        result = _ingest(db, file, "appointments")
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    stored = query(db, "SELECT address_lines FROM recruitment_slot WHERE origin = 'kairos'")
    assert [r[0] for r in stored] == [address]
    exported = runner.invoke(app, ["export", "enrolments", "--db", db, "--format", "csv"])
    assert exported.exit_code == 0
    cells = [c for row in csv.reader(io.StringIO(exported.stdout)) for c in row]
    assert "'" + FORMULAS[0] in cells
    assert not [c for c in cells if c.startswith(FORMULA_START)]


# ----------------------------------------------------------------------------- CSV outputs


def _formula_titles(root: etree._Element) -> None:
    for formation, formula in zip(root.iter(_q("formation")), FORMULAS, strict=False):
        title = formation.find(_q("intitule-formation"))
        assert title is not None
        title.text = formula


def test_export_sessions_csv_neutralises_formulas(
    db: str, tmp_path: Path, config_file: Path
) -> None:
    file = edited(generated(tmp_path, formations=6), tmp_path / "formulas.xml", _formula_titles)
    _load(db, file, config_file)
    out = tmp_path / "sessions.csv"
    result = runner.invoke(
        app, ["export", "sessions", "--db", db, "--format", "csv", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    cells = [c for row in csv.reader(out.open(encoding="utf-8")) for c in row]
    for formula in FORMULAS:
        assert "'" + formula in cells
    assert not [c for c in cells if c.startswith(FORMULA_START)]


def test_report_csv_neutralises_formulas(db: str, tmp_path: Path) -> None:
    data = QualityData(db)
    try:
        for formula in FORMULAS:
            # recruiting, no modality: flagged, so the row reaches signalements.csv
            data.session(
                carif_session_numero=formula,
                carif_action_numero=formula,
                dispensateur_raison_sociale=formula,
                debut=days(10),
            )
    finally:
        data.dispose()
    written = build_report(db, AS_OF, tmp_path / "rapport")
    text = written.csv_path.read_text(encoding="utf-8-sig")
    cells = [c for row in csv.reader(io.StringIO(text), delimiter=";") for c in row]
    for formula in FORMULAS:
        assert "'" + formula in cells
    assert not [c for c in cells if c.startswith(FORMULA_START)]
