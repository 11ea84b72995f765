"""Reading KAIROS exports: encodings, separators, BOM, quoting, refused files (no database)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kairos_export_fixtures import STATIC_FIXTURES, render, write_static_fixtures

from pipelines.kairos_exports import contracts
from pipelines.kairos_exports.reading import (
    BadLine,
    MalformedFileError,
    MissingColumnError,
    Record,
    UndecodableFileError,
    normalise_header,
    open_export,
)
from pipelines.kairos_exports.values import parse_count, parse_date, parse_siret, parse_time

HEADER = ("SIRET", "LIBELLE", "convention", "date début", "date fin", "Prénom RGC")
ROW = {
    "SIRET": "44820371100016",
    "LIBELLE": "Organisme | « Élan »; formation",  # both separators and cp1252 quotes
    "convention": "C1",
    "date début": "01/01/2024",
    "date fin": "",
    "Prénom RGC": "Hélène",
}


@pytest.mark.parametrize(
    ("encoding", "separator", "bom", "expected"),
    [
        ("utf-8", "|", False, "utf-8"),
        ("utf-8", ";", True, "utf-8-sig"),
        ("cp1252", ";", False, "cp1252"),
        ("cp1252", "|", False, "cp1252"),
    ],
)
def test_encodings_and_separators(
    tmp_path: Path, encoding: str, separator: str, bom: bool, expected: str
) -> None:
    path = tmp_path / "adherents.csv"
    path.write_bytes(render(HEADER, [ROW], encoding=encoding, separator=separator, bom=bom))
    table = open_export(path, required=contracts.REQUIRED_ADHERENTS)
    assert (table.encoding, table.separator) == (expected, separator)
    assert table.columns[0] == "siret"  # no BOM left in the first column name
    [record] = list(table.records())
    assert isinstance(record, Record)
    assert record.line == 2
    assert record.get("libelle") == ROW["LIBELLE"]
    assert record.get("prenom_rgc") == "Hélène"


def test_header_names_are_normalised() -> None:
    assert normalise_header("\ufeffDate Début ") == "date_debut"
    assert normalise_header("Téléphone RGC") == "telephone_rgc"
    assert normalise_header("PRENOM_RGC") == "prenom_rgc"


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "adherents.csv"
    path.write_bytes(render(HEADER[:3] + HEADER[4:], [ROW]))
    with pytest.raises(MissingColumnError) as caught:
        open_export(path, required=contracts.REQUIRED_ADHERENTS)
    assert str(path) in str(caught.value)
    assert "'date début'" in str(caught.value)
    assert caught.value.columns == ["date début"]


@pytest.mark.parametrize(
    "content",
    [
        b"SIRET|LIBELLE\r\n\x81\x8d\x8f\x90\x9d|x\r\n",  # undefined in cp1252, invalid UTF-8
        b"\xff\xfeS\x00I\x00",  # UTF-16
        b"SIRET|LIBELLE\x00\r\n",  # binary
        b"\xef\xbb\xbfSIRET|\xe9\r\n",  # BOM then invalid UTF-8
    ],
)
def test_undecodable_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(UndecodableFileError, match=r"broken\.csv"):
        open_export(path, required={})


@pytest.mark.parametrize("content", [b"", b"\r\n\r\n", b"SIRET,LIBELLE\r\n"])
def test_malformed_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(MalformedFileError, match=r"empty\.csv"):
        open_export(path, required={})


def test_ragged_lines_and_multiline_fields_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "SIRET|LIBELLE|convention|date début|date fin\n"
        '44820371100016|"two\nlines"|C1|01/01/2024|\n'
        "44820371100016|too|few\n"
        "\n"
        "44820371100016|ok|C2|01/01/2024|31/12/2024|\n",  # trailing separator tolerated
        encoding="utf-8",
    )
    items = list(open_export(path, required=contracts.REQUIRED_ADHERENTS).records())
    assert isinstance(items[0], Record) and items[0].line == 2
    assert items[0].get("libelle") == "two\nlines"
    assert isinstance(items[1], BadLine) and items[1].line == 4
    assert "expected 5 fields, found 3" in items[1].message
    assert isinstance(items[2], Record) and items[2].line == 6


def test_static_fixtures_match_the_generator(tmp_path: Path) -> None:
    for written in write_static_fixtures(tmp_path):
        committed = Path(__file__).parent / "fixtures" / "kairos" / written.name
        assert committed.read_bytes() == written.read_bytes(), (
            f"{committed.name} is stale: run `python tests/kairos_export_fixtures.py`"
        )
    assert {name for name, *_ in STATIC_FIXTURES} == {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize(
    ("parser", "cell"),
    [
        (parse_date, "lea.dupontel@exemple.fr"),
        (parse_date, "0612345678"),
        (parse_siret, "06 12 34 56 78"),
        (parse_siret, "Dupontel Léa"),
        (parse_time, "Karim"),
        (parse_count, "Benaïssa"),
    ],
)
def test_error_messages_do_not_quote_unexpected_content(
    parser: Callable[[str], object], cell: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parser(cell)
    message = str(caught.value)
    assert cell not in message and cell.replace(" ", "") not in message


def test_error_messages_quote_expected_shapes() -> None:
    with pytest.raises(ValueError, match="'31/02/2024'"):
        parse_date("31/02/2024")
    with pytest.raises(ValueError, match="has 10 digits"):
        parse_siret("4482037150")
