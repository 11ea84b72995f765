"""`kairos-sync validate`: text for people, JSON for tools, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app
from samples.generator import write_offers

runner = CliRunner()


def test_json_output(tmp_path: Path) -> None:
    path = tmp_path / "offers.xml"
    stats = write_offers(path, formations=30, seed=5, lheo_version="2.3", invalid_rate=0.2)
    result = runner.invoke(app, ["validate", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["lheo_version"] == "2.3"
    assert report["formations"] == 30
    assert report["valid"] == 30 - len(stats.invalid_numeros)
    assert sorted(q["numero"] for q in report["quarantined"]) == sorted(stats.invalid_numeros)
    for entry in report["quarantined"]:
        assert {"numero", "line", "path", "message"} <= set(entry)
        assert entry["path"].startswith("/formation") and entry["message"]
        assert isinstance(entry["line"], int)


def test_text_output_one_line_per_rejected_record(tmp_path: Path) -> None:
    path = tmp_path / "offers.xml"
    stats = write_offers(path, formations=30, seed=5, lheo_version="2.2", invalid_rate=0.2)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    bad = len(stats.invalid_numeros)
    assert lines[0].endswith(f"30 formations, {30 - bad} valid, {bad} quarantined")
    assert len(lines) == 1 + bad
    for numero in stats.invalid_numeros:
        assert any(f"formation {numero}," in line for line in lines[1:])


def test_whole_document_failure_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("SIRET|LIBELLE\n12345678900011|OF\n")
    result = runner.invoke(app, ["validate", str(path), "--format", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "export.csv: not an XML document" in result.stderr
