"""The streaming reader: whole-document failures, quarantine, hostile XML, gzip, records."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samples.generator import write_offers
from transforms.reader import DocumentError, OfferReader, read_offers
from transforms.records import Formation, QuarantinedRecord

FIXTURES = Path(__file__).parent / "fixtures"
READER_23 = FIXTURES / "reader-2.3.xml"


def read_all(path: Path, source: str | None = "test") -> list[Formation | QuarantinedRecord]:
    return list(read_offers(path, source))


def generated(tmp_path: Path, version: str, formations: int = 20, **kwargs: float) -> Path:
    path = tmp_path / f"offers-{version}.xml"
    write_offers(path, formations=formations, seed=7, lheo_version=version, **kwargs)
    return path


# -- whole-document failures ------------------------------------------------------------
def lheo_text(tmp_path: Path) -> str:
    return generated(tmp_path, "2.3", formations=30).read_text(encoding="utf-8")


WHOLE_DOCUMENT_FAILURES = {
    "empty": (lambda text: b"", "file is empty"),
    "whitespace only": (lambda text: b"   \n", "not an XML document"),
    "plain text": (lambda text: b"SIRET;LIBELLE\n1;2\n", "not an XML document"),
    "binary": (lambda text: bytes(range(256)), "XML"),
    "truncated": (lambda text: text[: len(text) * 4 // 5].encode(), "truncated XML"),
    "unknown namespace": (
        lambda text: text.replace("http://lheo.gouv.fr/2.3", "http://example.org/lheo").encode(),
        "unknown namespace 'http://example.org/lheo'",
    ),
    "no namespace": (
        lambda text: text.replace(' xmlns="http://lheo.gouv.fr/2.3"', "").encode(),
        "unknown namespace None",
    ),
    "wrong root": (
        lambda text: b'<?xml version="1.0"?><offres xmlns="http://lheo.gouv.fr/2.3"/>',
        "root element is <offres>, expected <lheo>",
    ),
    "doctype with external entity": (
        lambda text: (
            text.replace(
                "<lheo ",
                '<!DOCTYPE lheo [<!ENTITY secret SYSTEM "file:///etc/hostname">]>\n<lheo ',
                1,
            )
            .replace("<intitule-formation>", "<intitule-formation>&secret;", 1)
            .encode()
        ),
        "declares a DOCTYPE",
    ),
    "entity expansion bomb": (
        lambda text: (
            '<?xml version="1.0"?>\n<!DOCTYPE lheo [\n<!ENTITY a "aaaaaaaaaa">\n'
            + "".join(
                f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(9)
            )
            + ']>\n<lheo xmlns="http://lheo.gouv.fr/2.3"><offres>&j;</offres></lheo>'
        ).encode(),
        "refused",  # libxml2 may stop the amplification itself before our DOCTYPE check
    ),
    "external dtd": (
        lambda text: text.replace(
            "<lheo ", '<!DOCTYPE lheo SYSTEM "http://127.0.0.1:9/lheo.dtd">\n<lheo ', 1
        ).encode(),
        "declares a DOCTYPE",
    ),
}


@pytest.mark.parametrize("case", sorted(WHOLE_DOCUMENT_FAILURES))
def test_whole_document_failures(tmp_path: Path, case: str) -> None:
    make, expected = WHOLE_DOCUMENT_FAILURES[case]
    path = tmp_path / "snapshot.xml"
    path.write_bytes(make(lheo_text(tmp_path)))
    with pytest.raises(DocumentError) as caught:
        read_all(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert expected in message
    assert caught.value.file == str(path)


@pytest.mark.parametrize("case", ["truncated", "unknown namespace", "plain text"])
def test_whole_document_failures_gzip(tmp_path: Path, case: str) -> None:
    make, expected = WHOLE_DOCUMENT_FAILURES[case]
    path = tmp_path / "snapshot.xml.gz"
    path.write_bytes(gzip.compress(make(lheo_text(tmp_path))))
    with pytest.raises(DocumentError, match=expected):
        read_all(path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    path = generated(tmp_path, "2.2", formations=200)
    compressed = gzip.compress(path.read_bytes())
    truncated = tmp_path / "cut.xml.gz"
    truncated.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DocumentError, match="truncated or corrupt gzip"):
        read_all(truncated)


def test_truncation_is_seen_after_records_were_yielded(tmp_path: Path) -> None:
    """Streaming: the error comes mid-iteration; callers must not have committed anything."""
    path = generated(tmp_path, "2.3", formations=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 9 // 10])
    seen = 0
    with pytest.raises(DocumentError, match="truncated XML"):
        for _item in read_offers(path):
            seen += 1
    assert seen > 100


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot open file"):
        read_all(tmp_path / "absent.xml")


def test_external_entity_content_never_appears(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    text = lheo_text(tmp_path).replace(
        "<lheo ", f'<!DOCTYPE lheo [<!ENTITY s SYSTEM "file://{secret}">]>\n<lheo ', 1
    )
    path = tmp_path / "xxe.xml"
    path.write_text(text.replace("<intitule-formation>", "<intitule-formation>&s;", 1))
    with pytest.raises(DocumentError) as caught:
        read_all(path)
    assert "TOP-SECRET-VALUE" not in str(caught.value)


# -- quarantine ---------------------------------------------------------------------------
def test_bad_records_are_quarantined_and_the_file_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "mixed.xml"
    stats = write_offers(path, formations=60, seed=3, lheo_version="2.3", invalid_rate=0.25)
    assert stats.invalid_numeros, "the generator must inject faults at this rate"
    with OfferReader(path, source="sigma-occitanie") as reader:
        items = list(reader)
        counts = dict(reader.counts)
    quarantined = [i for i in items if isinstance(i, QuarantinedRecord)]
    valid = [i for i in items if isinstance(i, Formation)]
    assert {q.numero for q in quarantined} == set(stats.invalid_numeros)
    assert counts == {
        "formations": 60,
        "valid": 60 - len(stats.invalid_numeros),
        "quarantined": len(stats.invalid_numeros),
        "unchanged": 0,  # no known digests given: nothing skipped
        "misplaced": 0,
        "elements": 0,
    }
    assert len(valid) == counts["valid"]
    lines = path.read_text(encoding="utf-8").splitlines()
    for record in quarantined:
        assert record.source == "sigma-occitanie"
        assert record.file == str(path)
        assert record.line is not None
        assert f'numero="{record.numero}"' in lines[record.line - 1]
        assert record.reasons
        for reason in record.reasons:
            assert reason.path.startswith("/formation"), reason
            assert reason.message and "{http" not in reason.message
            assert reason.line is not None and reason.line >= record.line


def test_quarantine_reasons_name_the_element(tmp_path: Path) -> None:
    items = read_all(READER_23)
    bad = [i for i in items if isinstance(i, QuarantinedRecord)]
    assert [b.numero for b in bad] == ["F-RD-2"]
    reasons = {r.path: r for r in bad[0].reasons}
    assert "/formation/intitule-formation" in reasons
    assert "maximum length of '255'" in reasons["/formation/intitule-formation"].message
    siret = reasons["/formation/organisme-formation-responsable/SIRET-organisme-formation/SIRET"]
    assert "length of '13'" in siret.message
    source_lines = READER_23.read_text(encoding="utf-8").splitlines()
    assert "<SIRET>3560000000004</SIRET>" in source_lines[siret.line - 1]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("mutation", "expected_path", "expected_message"),
    [
        (
            ("<intitule-formation>Développeur web</intitule-formation>", ""),
            "/formation/objectif-formation",
            "Expected is ( intitule-formation )",
        ),
        (
            ("<etat-recrutement>1</etat-recrutement>", "<etat-recrutement>7</etat-recrutement>"),
            "/formation/action/session[1]/etat-recrutement",
            "not an element of the set",
        ),
        (
            ("<debut>20270104</debut>", "<debut>20272004</debut>"),  # month 13 passes LHEO
            "/formation/action/session[2]/periode/debut",
            "pattern",
        ),
        (
            ("<certifiante>1</certifiante>", "<certifiante>1</certifiante><couleur>bleu</couleur>"),
            "/formation/couleur",
            "couleur",
        ),
    ],
)
def test_quarantine_paths(
    tmp_path: Path, mutation: tuple[str, str], expected_path: str, expected_message: str
) -> None:
    text = READER_23.read_text(encoding="utf-8")
    assert mutation[0] in text
    path = tmp_path / "mutated.xml"
    path.write_text(text.replace(mutation[0], mutation[1], 1), encoding="utf-8")
    first = read_all(path)[0]
    assert isinstance(first, QuarantinedRecord) and first.numero == "F-RD-1"
    assert any(r.path == expected_path and expected_message in r.message for r in first.reasons), (
        first.reasons
    )


# -- records --------------------------------------------------------------------------------
def test_records_carry_the_kairos_fields() -> None:
    formation = read_all(READER_23)[0]
    assert isinstance(formation, Formation)
    assert formation.numero == "F-RD-1" and formation.lheo_version == "2.3"
    assert formation.main_formacode == "31734"  # tag="principal" wins over document order
    assert formation.formacodes == ("31734", "31754")
    assert formation.objectif_general == 6
    assert formation.responsable.siret == "35600000000048"
    assert formation.responsable.numero_activite == "24450000045"
    (action,) = formation.actions
    assert action.duration_hours == 680  # centre + entreprise when no total
    assert action.modalites_entrees_sorties == 1
    assert [f.siret for f in action.formateurs] == ["73282932000074", "55208131766522"]
    assert [p.siret for p in action.places] == ["73282932000074", None]
    assert action.places[1].coordinates.address is not None
    assert action.places[1].coordinates.address.denomination == "Salle annexe"
    assert [(f.code, f.places) for f in action.funders] == [("2", 12)]
    assert [(e.info, e.value) for e in action.extras] == [("programme", "#Avenir")]
    first, second = action.sessions
    assert first.numero == "S-RD-1" and first.etat_recrutement == 1
    assert first.period.debut is not None and first.period.debut.precision == "month"
    assert first.period.fin is not None and first.period.fin.precision == "unknown"
    assert [r.modality for r in first.recrutements] == [9, 8, 7, 3]
    ico, rdvi, window, _other = first.recrutements
    assert ico.places == 12 and ico.start_time == "9h30" and ico.address is not None
    assert ico.period is not None and ico.period.debut is not None
    assert ico.period.debut.iso() == "2026-12-01"
    assert rdvi.period is not None and rdvi.period.fin is not None
    assert rdvi.period.fin.iso() == "2026-12-20"
    assert window.remote is True and window.places == 30
    assert second.etat_recrutement is None and second.recrutements == ()


def test_real_22_records_are_read(shared_dir: Path) -> None:
    files = sorted((shared_dir / "reference" / "real-lheo").glob("*.xml"))
    assert len(files) == 18
    for file in files:
        items = read_all(file)
        assert items and all(isinstance(i, Formation) for i in items), file
        for formation in items:
            assert isinstance(formation, Formation)
            assert formation.lheo_version == "2.2"
            assert formation.responsable.siret
            assert all(a.sessions for a in formation.actions)


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    plain = generated(tmp_path, "2.2", formations=25)
    packed = tmp_path / "offers.xml.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert read_all(packed) == read_all(plain)


def test_version_is_known_before_iteration(tmp_path: Path) -> None:
    for version in ("2.2", "2.3"):
        with OfferReader(generated(tmp_path, version, formations=2)) as reader:
            assert reader.lheo_version == version


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    version=st.sampled_from(["2.2", "2.3"]),
    formations=st.integers(min_value=1, max_value=12),
    invalid_rate=st.sampled_from([0.0, 0.5]),
)
def test_generated_offers_round_trip(
    tmp_path: Path, seed: int, version: str, formations: int, invalid_rate: float
) -> None:
    path = tmp_path / f"rt-{seed}-{version}.xml"
    stats = write_offers(
        path, formations=formations, seed=seed, lheo_version=version, invalid_rate=invalid_rate
    )
    items = read_all(path)
    valid = [i for i in items if isinstance(i, Formation)]
    quarantined = [i for i in items if isinstance(i, QuarantinedRecord)]
    assert len(items) == stats.formations == formations
    assert sorted(q.numero or "" for q in quarantined) == sorted(stats.invalid_numeros)
    if not stats.invalid_numeros:
        assert sum(len(a.sessions) for f in valid for a in f.actions) == stats.sessions
        assert sum(len(f.actions) for f in valid) == stats.actions
    for formation in valid:
        assert formation.lheo_version == version
        assert formation.intitule and formation.responsable.siret
        for action in formation.actions:
            for session in action.sessions:
                assert session.period.debut is not None
