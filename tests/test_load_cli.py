"""`kairos-sync migrate | load | export sessions` and config/sources.yaml parsing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from core.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config
from pipelines.cli import app
from pipelines.export_sessions import neutralise_cell
from samples.generator import write_offers

runner = CliRunner()


def _formula_title(path: Path) -> Path:
    """The generated file with a first formation title that a spreadsheet would evaluate."""
    tree = etree.parse(str(path))
    ns = tree.getroot().nsmap[None]
    title = tree.getroot().find(f".//{{{ns}}}intitule-formation")
    assert title is not None
    title.text = '=HYPERLINK("http://evil","x")'
    out = path.with_name("formula.xml")
    tree.write(str(out), xml_declaration=True, encoding="utf-8")
    return out


def test_cli_migrate_load_export(db_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", "--db", db_url])
    assert result.exit_code == 0, result.output
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=20, seed=3, lheo_version="2.3")
    offers = _formula_title(offers)

    result = runner.invoke(
        app, ["load", str(offers), "--source", "sigma-occitanie", "--db", db_url]
    )
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "sessions_inserted" in result.output
    result = runner.invoke(
        app, ["load", str(offers), "--source", "sigma-occitanie", "--db", db_url]
    )
    assert result.exit_code == 0 and "noop" in result.output

    result = runner.invoke(app, ["export", "sessions", "--db", db_url, "--format", "json"])
    assert result.exit_code == 0, result.output
    sessions = json.loads(result.stdout)
    assert len(sessions) > 20
    required = {
        "carif_formation",
        "carif_action",
        "carif_session",
        "dispensateur_siret",
        "mandataire_siret",
        "split_reason",
        "etat_recrutement",
        "debut",
        "fin",
        "open_slots",
    }
    assert required <= set(sessions[0])
    with_slots = [s for s in sessions if s["open_slots"]]
    assert with_slots and {"modality", "starts_on", "capacity"} <= set(
        with_slots[0]["open_slots"][0]
    )

    result = runner.invoke(app, ["export", "sessions", "--db", db_url, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(sessions)
    titles = {r["intitule"] for r in rows}
    assert '\'=HYPERLINK("http://evil","x")' in titles
    assert not any(t.startswith("=") for t in titles)


def test_cli_load_refuses_a_truncated_document(db: str, tmp_path: Path) -> None:
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=20, seed=3, lheo_version="2.3")
    data = offers.read_bytes()
    offers.write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["load", str(offers), "--source", "sigma-occitanie", "--db", db])
    assert result.exit_code == 2
    assert "error:" in result.stderr and str(offers) in result.stderr


def test_cli_load_unknown_source_names_the_config(tmp_path: Path, sqlite_url: str) -> None:
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=2, seed=3, lheo_version="2.3")
    assert runner.invoke(app, ["migrate", "--db", sqlite_url]).exit_code == 0
    result = runner.invoke(app, ["load", str(offers), "--source", "nowhere", "--db", sqlite_url])
    assert result.exit_code == 2
    assert "sources.nowhere" in result.stderr and "sigma-occitanie" in result.stderr


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+33 1", "'+33 1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("Caen", "Caen"),
        (None, ""),
        (12, "12"),
    ],
)
def test_csv_cells_are_neutralised(cell: object, expected: str) -> None:
    assert neutralise_cell(cell) == expected


# ----------------------------------------------------------------------------- config


def test_example_config_parses() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    smf = config.source("smf-normandie")
    assert smf.lheo_version == "2.2" and smf.max_close_share == 0.2
    assert {m.kind for m in smf.guichet_unique} == {"extra", "action_numero_prefix"}
    assert config.source("sigma-occitanie").lheo_version == "2.3"


def test_unknown_keys_are_kept_for_other_stages() -> None:
    config = parse_config({"sources": {"x": {"snapshot_url": "https://…", "recipients": ["a"]}}})
    assert config.source("x").options == {"snapshot_url": "https://…", "recipients": ["a"]}
    assert config.source("x").guichet_unique == ()


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({}, "sources"),
        ({"sources": {"x": {"lheo_version": "2.4"}}}, "sources.x.lheo_version"),
        ({"sources": {"x": {"max_close_share": 1.5}}}, "sources.x.max_close_share"),
        ({"sources": {"x": {"max_close_share": "a lot"}}}, "sources.x.max_close_share"),
        (
            {"sources": {"x": {"guichet_unique": [{"siret": "1"}]}}},
            "sources.x.guichet_unique[0].siret",
        ),
        (
            {"sources": {"x": {"guichet_unique": [{"mandataire_siret": "123"}]}}},
            "sources.x.guichet_unique[0].mandataire_siret",
        ),
        (
            {"sources": {"x": {"guichet_unique": [{"extra": {"info": "programme"}}]}}},
            "sources.x.guichet_unique[0].extra",
        ),
        ({"sources": {"x": {"guichet_unique": {"extra": 1}}}}, "sources.x.guichet_unique"),
    ],
)
def test_config_errors_name_file_and_key(
    tmp_path: Path, document: dict[str, object], key: str
) -> None:
    import yaml

    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == key
    assert str(path) in str(error.value) and key in str(error.value)


def test_unquoted_14_digit_siret_is_accepted() -> None:
    document = {"sources": {"x": {"guichet_unique": [{"mandataire_siret": 31415926530000}]}}}
    assert parse_config(document).source("x").guichet_unique[0].value == "31415926530000"


def test_cli_and_dag_read_the_same_sources_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KAIROS_SOURCES_CONFIG is the default of every entry point, not of the DAG alone."""
    from pipelines.orchestration import config_path

    other = tmp_path / "sources.yaml"
    other.write_text("sources:\n  only-here:\n    lheo_version: '2.3'\n")
    monkeypatch.setenv("KAIROS_SOURCES_CONFIG", str(other))
    assert config_path() == other
    assert sorted(load_config().sources) == ["only-here"]
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=1, seed=3, lheo_version="2.3")
    db = f"sqlite:///{tmp_path / 'k.sqlite'}"
    assert runner.invoke(app, ["migrate", "--db", db]).exit_code == 0
    result = runner.invoke(app, ["load", str(offers), "--source", "smf-normandie", "--db", db])
    assert result.exit_code == 2
    assert "only-here" in result.stderr  # the configured sources named are those of the env's file
