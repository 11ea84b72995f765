"""The synthetic LHEO offer generator (samples/generator.py) and `kairos-sync generate`.

Generated files are validated against the project's schemas (lheo_schemas/) and, when
../shared is present, against the published LHEO schemas too.
"""

from __future__ import annotations

import collections
import datetime
import functools
import gzip
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum import luhn
from typer.testing import CliRunner

from lheo_schemas import schema_path
from pipelines.cli import app
from samples.generator import FAULT_KINDS, LHEO_NAMESPACES, GenerationStats, write_offers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PUBLISHED_SCHEMAS = {"2.2": "lheo-2.2.1.xsd", "2.3": "lheo-2.3.0.xsd"}
VERSIONS = ("2.2", "2.3")

Schema = Callable[[str], etree.XMLSchema]


@functools.cache
def _load_schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


def _project_schema(version: str) -> etree.XMLSchema:
    path = schema_path(version)
    if not path.exists():
        pytest.skip(f"the project's schema {path.name} is not written yet")
    return _load_schema(path)


@pytest.fixture(params=["project", pytest.param("published", marks=pytest.mark.shared)])
def schema(request: pytest.FixtureRequest) -> Schema:
    """LHEO version → schema: the project's, or the published one from ../shared."""
    if request.param == "project":
        return _project_schema
    reference = Path(request.getfixturevalue("shared_dir")) / "reference" / "lheo"

    def published(version: str) -> etree.XMLSchema:
        path = reference / PUBLISHED_SCHEMAS[version]
        if not path.exists():
            pytest.skip(f"{path} is absent")
        return _load_schema(path)

    return published


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _q(version: str, local: str) -> str:
    return f"{{{LHEO_NAMESPACES[version]}}}{local}"


def _formations(path: Path, version: str) -> Iterator[etree._Element]:
    """Each formation of a generated file, wrapped alone in lheo/offres."""
    ns = LHEO_NAMESPACES[version]
    for _, formation in etree.iterparse(str(path), tag=f"{{{ns}}}formation"):
        root = etree.Element(f"{{{ns}}}lheo", nsmap={None: ns})  # type: ignore[dict-item]
        etree.SubElement(root, f"{{{ns}}}offres").append(formation)
        yield formation


# -- determinism and file format ----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("suffix", [".xml", ".xml.gz"])
def test_same_arguments_same_bytes(tmp_path: Path, version: str, suffix: str) -> None:
    first, second, other = (tmp_path / f"{n}{suffix}" for n in ("a", "b", "c"))
    stats = write_offers(first, formations=40, seed=5, lheo_version=version, invalid_rate=0.1)
    again = write_offers(second, formations=40, seed=5, lheo_version=version, invalid_rate=0.1)
    write_offers(other, formations=40, seed=6, lheo_version=version, invalid_rate=0.1)
    assert stats == again
    assert _sha256(first) == _sha256(second)  # gzip: mtime 0, no file name in the header
    assert _sha256(first) != _sha256(other)
    assert not list(tmp_path.glob("*.part"))


def test_reference_date_moves_the_dates(tmp_path: Path) -> None:
    a, b = tmp_path / "a.xml", tmp_path / "b.xml"
    write_offers(a, formations=5, seed=1, lheo_version="2.3")
    write_offers(
        b, formations=5, seed=1, lheo_version="2.3", reference_date=datetime.date(2027, 3, 1)
    )
    assert _sha256(a) != _sha256(b)


@pytest.mark.parametrize("version", VERSIONS)
def test_gzip_output_is_readable(tmp_path: Path, version: str) -> None:
    path = tmp_path / "offers.xml.gz"
    stats = write_offers(path, formations=30, seed=2, lheo_version=version)
    assert stats.bytes_written == path.stat().st_size
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n')
    root = etree.fromstring(data)
    assert root.tag == _q(version, "lheo")
    assert len(root.findall(f"{_q(version, 'offres')}/{_q(version, 'formation')}")) == 30
    assert len(data) > stats.bytes_written  # really compressed


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_at_zero_invalid_rate(tmp_path: Path, version: str, schema: Schema) -> None:
    path = tmp_path / "offers.xml"
    stats = write_offers(path, formations=150, seed=42, lheo_version=version)
    document = etree.parse(str(path))
    validator = schema(version)
    assert validator.validate(document), str(validator.error_log)[:2000]
    root = document.getroot()
    assert root.tag == _q(version, "lheo")
    assert stats.invalid_numeros == ()
    assert stats.bytes_written == path.stat().st_size
    assert stats.formations == len(root.findall(f".//{_q(version, 'formation')}")) == 150
    assert stats.actions == len(root.findall(f".//{_q(version, 'action')}"))
    assert stats.sessions == len(root.findall(f".//{_q(version, 'session')}"))
    assert 1 <= stats.actions / stats.formations <= 3
    assert 1 <= stats.sessions / stats.actions <= 4


# -- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_each_fault_breaks_exactly_its_formation(
    tmp_path: Path, version: str, schema: Schema
) -> None:
    validator = schema(version)
    faulty, clean = tmp_path / "faulty.xml", tmp_path / "clean.xml"
    stats = write_offers(faulty, formations=120, seed=9, lheo_version=version, invalid_rate=0.25)
    write_offers(clean, formations=120, seed=9, lheo_version=version)
    assert len(stats.invalid_numeros) == 30 >= 4 * len(FAULT_KINDS)  # every kind, 4 times
    assert len(set(stats.invalid_numeros)) == 30

    invalid: list[str] = []
    errors: collections.Counter[str] = collections.Counter()
    for formation in _formations(faulty, version):
        if not validator.validate(formation.getroottree()):
            invalid.append(formation.get("numero", ""))
            message = str(validator.error_log)
            facet = re.search(r"\[facet '(\w+)'\]", message)
            errors[facet.group(1) if facet else "content model"] += 1
    assert invalid == list(stats.invalid_numeros)
    # Content model (missing, unknown, misplaced), lengths, dictionaries and date patterns.
    assert {"content model", "enumeration", "pattern"} <= set(errors), errors
    assert {"minLength", "maxLength", "length"} & set(errors), errors

    # The formations left alone are exactly those of the fault-free file.
    broken = set(stats.invalid_numeros)
    kept = {
        f.get("numero"): etree.tostring(f)
        for f in _formations(faulty, version)
        if f.get("numero") not in broken
    }
    reference = {
        f.get("numero"): etree.tostring(f)
        for f in _formations(clean, version)
        if f.get("numero") in kept
    }
    assert kept == reference


def test_whole_file_invalid_when_every_formation_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "all.xml"
    stats = write_offers(path, formations=14, seed=1, lheo_version="2.3", invalid_rate=1.0)
    assert len(stats.invalid_numeros) == 14
    assert not _project_schema("2.3").validate(etree.parse(str(path)))


def test_small_rate_still_injects_one_fault(tmp_path: Path) -> None:
    stats = write_offers(
        tmp_path / "o.xml", formations=10, seed=1, lheo_version="2.2", invalid_rate=0.01
    )
    assert len(stats.invalid_numeros) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lheo_version": "2.1"},
        {"formations": 0},
        {"invalid_rate": -0.1},
        {"invalid_rate": 1.5},
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"formations": 3, "seed": 1, "lheo_version": "2.3"}
    arguments.update(kwargs)
    with pytest.raises(ValueError):
        write_offers(tmp_path / "o.xml", **arguments)  # type: ignore[arg-type]


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samples import generator

    original = generator._FormationBuilder.formation

    def failing(self: generator._FormationBuilder, rank: int) -> tuple[etree._Element, int, int]:
        if rank == 3:
            raise RuntimeError("disk full")
        return original(self, rank)

    monkeypatch.setattr(generator._FormationBuilder, "formation", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_offers(tmp_path / "o.xml.gz", formations=5, seed=1, lheo_version="2.3")
    assert list(tmp_path.iterdir()) == []


# -- variety ------------------------------------------------------------------------------


def _texts(root: etree._Element, version: str, path: str) -> list[str]:
    steps = "/".join(_q(version, step) for step in path.split("/"))
    return [element.text or "" for element in root.iterfind(f".//{steps}")]


def _common_variety(root: etree._Element, version: str) -> None:
    formations = root.findall(f".//{_q(version, 'formation')}")
    actions = root.findall(f".//{_q(version, 'action')}")
    sessions = root.findall(f".//{_q(version, 'session')}")
    numeros = [e.get("numero") for e in (*formations, *actions, *sessions)]
    assert None not in numeros and len(set(numeros)) == len(numeros)

    sirets = _texts(root, version, "SIRET")
    assert all(len(s) == 14 and s.isdigit() and luhn.is_valid(s) for s in sirets)
    responsables = _texts(root, version, "SIRET-organisme-formation/SIRET")
    assert len(set(responsables)) < len(responsables) / 2  # the same OFs recur
    assert all(len(n) == 11 for n in _texts(root, version, "numero-activite"))

    # Main FORMACODE first, sometimes tagged.
    tagged = root.findall(f".//{_q(version, 'code-FORMACODE')}[@tag='principal']")
    assert tagged and all(t.getprevious() is None for t in tagged)

    entries = collections.Counter(_texts(root, version, "modalites-entrees-sorties"))
    assert entries["1"] > 0 and entries["0"] > entries["1"]
    etats = collections.Counter(_texts(root, version, "etat-recrutement"))
    assert etats["1"] > etats["2"] > 0 and etats["3"] > 0
    assert etats["1"] > 0.6 * sum(etats.values())

    financeurs = root.findall(f".//{_q(version, 'organisme-financeur')}")
    assert len({f.findtext(_q(version, "code-financeur")) for f in financeurs}) >= 5
    places = [f.findtext(_q(version, "nb-places-financees")) for f in financeurs]
    assert places.count(None) > 0 and places.count("0") > 0

    totals = root.findall(f".//{_q(version, 'nombre-heures-total')}")
    centre = root.findall(f".//{_q(version, 'nombre-heures-centre')}")
    assert (
        totals
        and centre
        and len(centre) == len(root.findall(f".//{_q(version, 'nombre-heures-entreprise')}"))
    )

    debuts = _texts(root, version, "session/periode/debut")
    fins = _texts(root, version, "session/periode/fin")
    assert any(d.endswith("00") and not d.endswith("0000") for d in debuts)  # AAAAMM00
    assert "99999999" in fins
    reference = "20261101"
    assert any(f.isdigit() and "00" not in (f[4:6], f[6:]) and f < reference for f in fins)
    assert any(d.isdigit() and d[6:] != "00" and d > reference for d in debuts)

    avenir = [
        e
        for e in root.iterfind(f".//{_q(version, 'extra')}[@info='programme']")
        if e.text == "#Avenir"
    ]
    assert avenir
    avn_actions = [a for a in actions if (a.get("numero") or "").startswith("AVN-")]
    assert avn_actions and len(avn_actions) < 0.2 * len(actions)
    for formation in formations:
        marked = formation.find(f".//{_q(version, 'extra')}[@info='programme']") is not None
        action_numeros = [a.get("numero") or "" for a in formation.iter(_q(version, "action"))]
        assert marked == all(n.startswith("AVN-") for n in action_numeros)

    titles = _texts(root, version, "intitule-formation")
    assert len(set(titles)) > 40
    assert any("é" in t for t in titles)


@pytest.fixture(scope="module")
def offers_23(tmp_path_factory: pytest.TempPathFactory) -> etree._Element:
    path = tmp_path_factory.mktemp("variety") / "offers-2.3.xml"
    write_offers(path, formations=200, seed=2026, lheo_version="2.3")
    return etree.parse(str(path)).getroot()


@pytest.fixture(scope="module")
def offers_22(tmp_path_factory: pytest.TempPathFactory) -> etree._Element:
    path = tmp_path_factory.mktemp("variety") / "offers-2.2.xml"
    write_offers(path, formations=200, seed=2026, lheo_version="2.2")
    return etree.parse(str(path)).getroot()


def test_variety_23(offers_23: etree._Element) -> None:
    v = "2.3"
    root = offers_23
    _common_variety(root, v)
    actions = root.findall(f".//{_q(v, 'action')}")

    co_contracting = [a for a in actions if len(a.findall(_q(v, "organisme-formateur"))) >= 2]
    without_formateur = [a for a in actions if a.find(_q(v, "organisme-formateur")) is None]
    assert len(co_contracting) >= 10 and len(without_formateur) >= 10

    lieux = root.findall(f".//{_q(v, 'lieu-de-formation')}")
    detached = [lieu for lieu in lieux if lieu.find(_q(v, "SIRET-lieu-formation")) is None]
    with_siret = [lieu for lieu in lieux if lieu.find(_q(v, "SIRET-lieu-formation")) is not None]
    assert len(detached) >= 10 and len(with_siret) >= 10
    of_a_formateur = 0
    for action in actions:
        formateurs = set(_texts(action, v, "organisme-formateur/SIRET-formateur/SIRET"))
        places = _texts(action, v, "lieu-de-formation/SIRET-lieu-formation/SIRET")
        of_a_formateur += sum(siret in formateurs for siret in places)
    assert of_a_formateur >= 10
    assert any(a.find(_q(v, "lieu-de-formation")) is None for a in actions)
    assert any(len(a.findall(_q(v, "lieu-de-formation"))) >= 2 for a in actions)

    sessions = root.findall(f".//{_q(v, 'session')}")
    modalities = collections.Counter(_texts(root, v, "recrutement/modalite-recrutement"))
    assert all(modalities[code] >= 20 for code in ("7", "8", "9"))
    assert modalities["3"] + modalities["6"] > 0
    no_modality = [s for s in sessions if s.find(_q(v, "recrutement")) is None]
    assert 0.05 * len(sessions) < len(no_modality) < 0.25 * len(sessions)

    for block in root.iterfind(f".//{_q(v, 'recrutement')}"):
        code = block.findtext(_q(v, "modalite-recrutement"))
        debut = block.findtext(f"{_q(v, 'periode')}/{_q(v, 'debut')}")
        fin = block.findtext(f"{_q(v, 'periode')}/{_q(v, 'fin')}")
        if code == "9":  # a dated meeting with places and hours
            assert debut == fin and debut is not None
            assert block.find(_q(v, "nb-places")) is not None
            assert block.find(_q(v, "heure-debut")) is not None
        elif code in ("7", "8"):  # a window
            assert debut is not None and fin is not None and debut <= fin
    assert not root.findall(f".//{_q(v, 'date-information')}")


def test_variety_22(offers_22: etree._Element) -> None:
    v = "2.2"
    root = offers_22
    _common_variety(root, v)
    formations = root.findall(f".//{_q(v, 'formation')}")
    # 2.2: at most one organisme-formateur per action, so co-contracting shows as several
    # actions of one formation delivered by different formateurs.
    co_contracting = 0
    for formation in formations:
        per_action = [
            tuple(_texts(action, v, "organisme-formateur/SIRET-formateur/SIRET"))
            for action in formation.iter(_q(v, "action"))
        ]
        assert all(len(sirets) <= 1 for sirets in per_action)
        co_contracting += len({s for s in per_action if s}) >= 2
    assert co_contracting >= 10
    info = [
        len(a.findall(_q(v, "date-information"))) for a in root.iterfind(f".//{_q(v, 'action')}")
    ]
    assert max(info) == 3 and info.count(0) > 0
    assert root.findall(f".//{_q(v, 'adresse-information')}")
    assert not root.findall(f".//{_q(v, 'recrutement')}")


# -- command line -------------------------------------------------------------------------


def test_cli_generate(tmp_path: Path) -> None:
    out = tmp_path / "cli.xml.gz"
    args = ["generate", "--formations", "25", "--seed", "3", "--lheo-version", "2.2"]
    args += ["--invalid-rate", "0.2", "--reference-date", "2026-06-15", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert 1 <= len(lines) <= 2
    assert "25 formations" in lines[0] and "5 invalid" in lines[0]
    assert f"{out.stat().st_size} bytes" in lines[0]
    expected = tmp_path / "api.xml.gz"
    write_offers(
        expected,
        formations=25,
        seed=3,
        lheo_version="2.2",
        invalid_rate=0.2,
        reference_date=datetime.date(2026, 6, 15),
    )
    assert _sha256(out) == _sha256(expected)


@pytest.mark.parametrize(
    "bad", [["--lheo-version", "2.4"], ["--reference-date", "15/06/2026"], ["--formations", "0"]]
)
def test_cli_generate_rejects_bad_options(tmp_path: Path, bad: list[str]) -> None:
    result = CliRunner().invoke(app, ["generate", "-o", str(tmp_path / "x.xml"), *bad])
    assert result.exit_code == 2
    assert not (tmp_path / "x.xml").exists()


# -- memory and properties ----------------------------------------------------------------

_PEAK_RSS = """
import resource, subprocess, sys
generate = (
    "import sys; from samples.generator import write_offers; "
    "write_offers(sys.argv[1], formations=int(sys.argv[2]), seed=3, lheo_version='2.3')"
)
subprocess.run([sys.executable, "-c", generate, *sys.argv[1:]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kib(path: Path, formations: int) -> int:
    """Peak RSS (KiB) of a fresh process generating `formations` formations."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path), str(formations)],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    small = _peak_rss_kib(tmp_path / "small.xml", 1_000)
    large = _peak_rss_kib(tmp_path / "large.xml", 10_000)
    assert (tmp_path / "large.xml").stat().st_size > 8 * (tmp_path / "small.xml").stat().st_size
    assert large - small < 8 * 1024, f"peak RSS grew from {small} KiB to {large} KiB"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=-(2**31), max_value=2**63),
    version=st.sampled_from(VERSIONS),
    formations=st.integers(min_value=1, max_value=6),
    reference=st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2090, 12, 31)),
)
def test_any_seed_gives_a_valid_file(
    seed: int, version: str, formations: int, reference: datetime.date
) -> None:
    validator = _project_schema(version)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "offers.xml"
        stats = write_offers(
            path, formations=formations, seed=seed, lheo_version=version, reference_date=reference
        )
        assert isinstance(stats, GenerationStats)
        assert validator.validate(etree.parse(str(path))), str(validator.error_log)[:2000]
