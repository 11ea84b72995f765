"""Synthetic KAIROS / France Travail exports for the tests of their ingestion.

Everything here is invented but shaped like the real thing, including the personal data
(names with accents, e-mails, phones, job-seeker numbers): the privacy test scans the
database and the logs for exactly these values, so they must look real enough that a
leak would show. `python tests/kairos_export_fixtures.py` rewrites the static files
under tests/fixtures/kairos/ (a test checks they are in sync with this generator).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import siret as stdnum_siret

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "kairos"
PSEUDONYM_KEY = b"test-key-not-a-secret-0123456789"


def make_siret(siren8: str, nic4: str) -> str:
    """A valid SIRET (Luhn on the SIREN and on the whole) from 8 + 4 digits."""
    for siren_key in "0123456789":
        siren = siren8 + siren_key
        if not stdnum_siren.is_valid(siren):
            continue
        for digit in "0123456789":
            if stdnum_siret.is_valid(siren + nic4 + digit):
                return siren + nic4 + digit
    raise AssertionError(siren8)


SIRET_A = make_siret("44820371", "0001")  # dispensateur with its own KAIROS session
SIRET_M = make_siret("34187926", "0002")  # mandataire (guichet unique session under it)
SIRET_B = make_siret("52901334", "0003")  # co-contractor with no session of its own
SIRET_X = make_siret("80123456", "0004")  # account whose convention has expired
SESSION_A = "SE_00012345"
SESSION_M = "SE_00067890"
SESSION_UNKNOWN = "SE_00099999"
ACTION = "AF_00004321"


@dataclass(frozen=True)
class Person:
    local_id: str  # N° DE / c_individulocal
    national_id: str  # dn_individu_national
    last: str
    first: str
    email: str
    phone1: str
    phone2: str

    @property
    def personal_values(self) -> tuple[str, ...]:
        return (
            self.local_id,
            self.national_id,
            self.last,
            self.first,
            self.email,
            self.phone1,
            self.phone2,
            f"{self.last} {self.first}",
        )


PEOPLE = (
    Person(
        "3456789K",
        "98711220033",
        "Dupontel",
        "Léa",
        "lea.dupontel@exemple.fr",
        "0612345678",
        "01 44 55 66 77",
    ),
    Person(
        "4567891L",
        "98722330044",
        "Benaïssa",
        "Karim",
        "k.benaissa@courriel.fr",
        "0698765432",
        "+33 5 61 22 33 44",
    ),
    Person(
        "5678912M",
        "98733440055",
        "Le Goff",
        "Maëlle",
        "maelle.legoff@exemple.org",
        "0755443322",
        "02 98 11 22 33",
    ),
    Person(
        "6789123N",
        "98744550066",
        "Ferreira",
        "João",
        "joao.ferreira@boite.fr",
        "0633221100",
        "05 56 77 88 99",
    ),
    Person(
        "7891234P",
        "98755660077",
        "Nguyễn",
        "Thi Hoa",
        "thihoa.nguyen@exemple.fr",
        "0644556677",
        "03 20 40 50 60",
    ),
    Person(
        "8912345Q",
        "98766770088",
        "Lefèvre",
        "Françoise",
        "f.lefevre@courriel.fr",
        "0677889900",
        "04 91 00 11 22",
    ),
    Person(
        "9123456R",
        "98777880099",
        "Traoré",
        "Aïssata",
        "aissata.traore@exemple.fr",
        "0611223344",
        "01 60 70 80 90",
    ),
    Person(
        "1234567S",
        "98788990011",
        "Öztürk",
        "Emre",
        "emre.ozturk@boite.fr",
        "0622334455",
        "03 88 11 22 33",
    ),
    Person(
        "2345678T",
        "98799001122",
        "Da Silva",
        "Inês",
        "ines.dasilva@exemple.org",
        "0733445566",
        "02 40 11 22 33",
    ),
    Person(
        "3456781U",
        "98700112233",
        "Müller",
        "Jérôme",
        "jerome.muller@courriel.fr",
        "0644332211",
        "03 89 44 55 66",
    ),
    Person(
        "4567812V",
        "98711223344",
        "Rakotomalala",
        "Noémie",
        "noemie.rako@exemple.fr",
        "0655667788",
        "02 62 11 22 33",
    ),
    Person(
        "5678123W",
        "98722334455",
        "Çelik",
        "Zoé",
        "zoe.celik@boite.fr",
        "0666778899",
        "04 78 11 22 33",
    ),
    Person(
        "6781234X",
        "98733445566",
        "Hoareau",
        "Cédric",
        "cedric.hoareau@exemple.fr",
        "0699887766",
        "02 62 44 55 66",
    ),
)
# Nguyễn is not in Windows-1252: cp1252 fixtures use a transliteration (see `encodable`).

RGC = (
    ("Vautrin", "Sandrine", "s.vautrin@formapro-exemple.fr", "02 31 45 67 89"),
    ("Kowalski", "Grégoire", "gregoire.kowalski@exemple.fr", "0611998877"),
    ("Bénard", "Hélène", "helene.benard@courriel.fr", "05 34 22 11 00"),
)


def personal_data() -> set[str]:
    """Every personal value the fixtures contain (and its cp1252-safe spelling)."""
    values: set[str] = set()
    for person in PEOPLE:
        values.update(person.personal_values)
    for rgc in RGC:
        values.update(rgc)
        values.add(f"{rgc[0]} {rgc[1]}")
    return values | {encodable(v) for v in values}


def encodable(text: str, encoding: str = "cp1252") -> str:
    """`text` with the characters `encoding` lacks replaced by their base letter."""
    import unicodedata

    out = []
    for char in text:
        try:
            char.encode(encoding)
            out.append(char)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char)[0]
            out.append(base if base.isascii() else "?")
    return "".join(out)


# -- headers ---------------------------------------------------------------------------------

ADHERENTS_HEADER = (
    "SIRET", "LIBELLE", "REGION", "Nouvelle région", "Nom RGC", "Prénom RGC", "mail RGC",
    "Téléphone RGC", "ASSEDIC", "convention", "date début", "date fin",
)  # fmt: skip

TRAINING_PLANS_HEADER = (
    "c_nomcorrespondance", "c_prenomcorrespondance", "c_adresseemail", "c_telephone1",
    "c_telephone2", "c_validitemail_id", "dn_individu_national", "dn_session_id",
    "c_individulocal", "dc_formation_id", "dc_lblformation", "dd_datedebutplanformation",
    "dd_datefinplanformation", "dc_organisme_id", "dc_cp_lieuformation",
    "dc_insee_lieuformation", "dc_ville_lieuformation", "dc_formacode_ppal_id",
    "dc_formacode_secondaire1_id", "dc_formacode_secondaire2_id", "dc_formacode_secondaire3_id",
    "dc_formacode_secondaire4_id", "dn_certifinfo_1_id", "dn_certifinfo_2_id",
    "dn_certifinfo_3_id", "dn_certifinfo_4_id", "dn_certifinfo_5_id", "dc_siret",
    "dc_lblorganisme", "dc_raisonsociale", "departement", "dc_numeroicsession",
    "dc_numeroicaction", "liste_financeur", "c_dispositifformation", "dc_siretformateur",
    "dc_lblorganismeformateur", "dc_raisonsocialeformateur", "dc_cofinanceuropca",
)  # fmt: skip

APPOINTMENTS_HEADER = (
    "numero_session_carif", "numero_action_carif", "siret_dispensateur", "modalite",
    "date_rdv", "heure_debut", "heure_fin", "periode_debut", "periode_fin", "capacite",
    "adresse", "code_postal", "ville", "a_distance", "identifiant_candidat",
    "identifiant_national", "nom_prenom", "telephone", "prise_de_contact", "presence",
    "resultat", "statut_rdv", "statut_inscription", "date_entree", "date_sortie",
    "origine_prescription", "date_maj",
)  # fmt: skip

HEADERS: Mapping[str, Sequence[str]] = {
    "adherents": ADHERENTS_HEADER,
    "training-plans": TRAINING_PLANS_HEADER,
    "appointments": APPOINTMENTS_HEADER,
}

# -- rows ------------------------------------------------------------------------------------


def adherent(
    siret: str, convention: str, start: str, end: str, rgc: int = 0, **extra: str
) -> dict[str, str]:
    last, first, mail, phone = RGC[rgc]
    row = {
        "SIRET": siret, "LIBELLE": "FORMAPRO NORMANDIE", "REGION": "BASSE-NORMANDIE",
        "Nouvelle région": "NORMANDIE", "Nom RGC": last, "Prénom RGC": first,
        "mail RGC": mail, "Téléphone RGC": phone, "ASSEDIC": "14", "convention": convention,
        "date début": start, "date fin": end,
    }  # fmt: skip
    row.update(extra)
    return row


def adherent_rows() -> list[dict[str, str]]:
    return [
        adherent(SIRET_A, "CONV-2023-001", "01/01/2023", "31/12/2025"),
        adherent(SIRET_A, "CONV-2019-007", "01/01/2019", "31/12/2022", rgc=1),
        adherent(SIRET_M, "CONV-2020-014", "01/01/2020", "", rgc=2, LIBELLE="GIP MANDATAIRE"),
        adherent(SIRET_X, "CONV-2017-003", "01/01/2017", "31/12/2019", LIBELLE="ANCIEN OF"),
        adherent("4482037", "CONV-2024-099", "01/01/2024", "31/12/2024", rgc=1),  # bad SIRET
        adherent(SIRET_B, "CONV-2024-100", "32/01/2024", "31/12/2024", rgc=2),  # bad date
    ]


def training_plan(person: Person, **values: str) -> dict[str, str]:
    row = dict.fromkeys(TRAINING_PLANS_HEADER, "")
    row.update(
        c_nomcorrespondance=person.last, c_prenomcorrespondance=person.first,
        c_adresseemail=person.email, c_telephone1=person.phone1, c_telephone2=person.phone2,
        c_validitemail_id="1", dn_individu_national=person.national_id, dn_session_id="771234",
        c_individulocal=person.local_id, dc_formation_id="FOR_123", dc_lblformation=
        "Titre professionnel gestionnaire comptable et fiscal", dd_datedebutplanformation=
        "02/09/2024", dd_datefinplanformation="20/12/2024", dc_organisme_id="ORG_9",
        dc_cp_lieuformation="14000", dc_insee_lieuformation="14118", dc_ville_lieuformation=
        "Caen", dc_formacode_ppal_id="32663", dc_siret=SIRET_M, dc_lblorganisme="GIP",
        dc_raisonsociale="GIP MANDATAIRE", departement="14", dc_numeroicsession=SESSION_A,
        dc_numeroicaction=ACTION, liste_financeur="10;13", c_dispositifformation="PRF",
        dc_siretformateur=SIRET_A, dc_lblorganismeformateur="FORMAPRO",
        dc_raisonsocialeformateur="FORMAPRO NORMANDIE", dc_cofinanceuropca="N",
    )  # fmt: skip
    row.update(values)
    return row


def training_plan_rows() -> list[dict[str, str]]:
    p = PEOPLE
    return [
        training_plan(p[0]),  # linked by the dispensateur SIRET
        training_plan(p[1], dc_numeroicsession=SESSION_M, dc_siretformateur=SIRET_B),  # by dc_siret
        training_plan(p[2], dc_numeroicsession=SESSION_UNKNOWN),  # unmatched, kept
        training_plan(p[3], dd_datedebutplanformation="31/02/2024"),  # bad date
        training_plan(p[4], dc_siretformateur="4482037150"),  # bad SIRET length
        training_plan(
            p[5],
            dc_lblformation="Titre pro | Gestionnaire; comptable",  # both separators, quoted
            dd_datedebutplanformation="2024-09-02 00:00:00",
            dd_datefinplanformation="2024-12-20 00:00:00",
        ),
    ]


def appointment(person: Person, **values: str) -> dict[str, str]:
    row = dict.fromkeys(APPOINTMENTS_HEADER, "")
    row.update(
        numero_session_carif=SESSION_A, numero_action_carif=ACTION, siret_dispensateur=SIRET_A,
        modalite="ICO", date_rdv="12/03/2024", heure_debut="09:30", heure_fin="12:00",
        capacite="12", adresse="12 rue des Écoles", code_postal="14000", ville="Caen",
        a_distance="non", identifiant_candidat=person.local_id, nom_prenom=f"{person.last} {person.first}",  # noqa: E501
        telephone=person.phone1, statut_rdv="Inscrit", origine_prescription="France Travail",
        date_maj="12/03/2024",
    )  # fmt: skip
    row.update(values)
    return row


def appointment_rows() -> list[dict[str, str]]:
    p = PEOPLE
    return [
        # 0 → positionne, present, retenu, inscrit
        appointment(
            p[0],
            presence="Présent",
            resultat="Retenu",
            statut_inscription="Inscrit",
            date_maj="20/03/2024",
        ),
        # 6 → positionne, absent
        appointment(p[6], presence="Absent"),
        # 7 → RDVI cancelled by the job seeker
        appointment(
            p[7],
            modalite="RDVI",
            date_rdv="14/03/2024",
            heure_debut="10h00",
            heure_fin="",
            statut_rdv="RDV annulé",
            date_maj="13/03/2024",
        ),
        # 8 → candidature window: contacted, interviewed, waiting list
        appointment(
            p[8],
            modalite="Inscription sur candidature",
            date_rdv="18/03/2024",
            heure_debut="",
            heure_fin="",
            periode_debut="01/03/2024",
            periode_fin="31/03/2024",
            capacite="20",
            prise_de_contact="Contacté",
            presence="Présent",
            resultat="Retenu mis en attente",
            origine_prescription="Mission Locale",
            date_maj="19/03/2024",
        ),
        # 9 → slot deleted by the OF
        appointment(
            p[9],
            date_rdv="19/03/2024",
            heure_debut="14:00",
            statut_rdv="RDV supprimé",
            date_maj="15/03/2024",
        ),
        # 10 → unknown session: kept, unlinked, no slot
        appointment(p[10], numero_session_carif=SESSION_UNKNOWN),
        # 11 → forbidden: non retenu then inscrit
        appointment(
            p[11],
            presence="Présent",
            resultat="Non retenu",
            statut_inscription="Inscrit",
            date_maj="20/03/2024",
        ),
        # 12 → whole path to the exit
        appointment(
            p[12],
            presence="Présent",
            resultat="Retenu",
            statut_inscription="Sorti",
            date_entree="02/09/2024",
            date_sortie="20/12/2024",
            origine_prescription="Cap emploi",
            date_maj="21/12/2024",
        ),
        # bad appointment date
        appointment(p[1], date_rdv="2024/13/45"),
    ]


ROWS = {
    "adherents": adherent_rows,
    "training-plans": training_plan_rows,
    "appointments": appointment_rows,
}

# -- writing ---------------------------------------------------------------------------------


def render(
    header: Sequence[str],
    rows: Iterable[Mapping[str, str]],
    *,
    encoding: str = "utf-8",
    separator: str = "|",
    bom: bool = False,
) -> bytes:
    """An export as bytes: csv-quoted where needed, CRLF line ends like Windows tools."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    text = buffer.getvalue()
    if encoding == "cp1252":
        text = encodable(text)
    data = text.encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def write_export(
    path: Path,
    kind: str,
    rows: Iterable[Mapping[str, str]] | None = None,
    *,
    encoding: str = "utf-8",
    separator: str = "|",
    bom: bool = False,
) -> Path:
    rows = ROWS[kind]() if rows is None else rows
    path.write_bytes(render(HEADERS[kind], rows, encoding=encoding, separator=separator, bom=bom))
    return path


# (file name, kind, encoding, separator, bom): both encodings and both separators per kind.
STATIC_FIXTURES = (
    ("adherents_utf8_pipe.csv", "adherents", "utf-8", "|", False),
    ("adherents_cp1252_semicolon.csv", "adherents", "cp1252", ";", False),
    ("training_plans_utf8bom_pipe.csv", "training-plans", "utf-8", "|", True),
    ("training_plans_cp1252_semicolon.csv", "training-plans", "cp1252", ";", False),
    ("appointments_utf8_semicolon.csv", "appointments", "utf-8", ";", False),
    ("appointments_cp1252_pipe.csv", "appointments", "cp1252", "|", False),
)


def write_static_fixtures(directory: Path = FIXTURES_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [
        write_export(directory / name, kind, encoding=enc, separator=sep, bom=bom)
        for name, kind, enc, sep, bom in STATIC_FIXTURES
    ]


# -- database setup --------------------------------------------------------------------------


def insert_session(
    engine: sa.Engine,
    carif_session: str,
    dispensateur: str,
    mandataire: str,
    *,
    source: str = "normandie",
    run_id: int | None = None,
) -> int:
    """A minimal `kairos_session` row: the key columns, placeholders for the others, so
    the tests follow the core model's schema whatever columns it adds."""
    from core.history import start_run

    if run_id is None:
        run_id = start_run(engine, run_kind="test-setup", source=source)
    known: dict[str, Any] = {
        "source": source,
        "carif_formation_numero": "FO_0001",
        "carif_action_numero": ACTION,
        "carif_session_numero": carif_session,
        "dispensateur_siret": dispensateur,
        "mandataire_siret": mandataire,
        "first_seen_run_id": run_id,
        "last_seen_run_id": run_id,
        "content_hash": "test",
        "intitule": "Gestionnaire comptable",
    }
    table = sa.Table("kairos_session", sa.MetaData(), autoload_with=engine)
    values = dict(known)
    for column in table.columns:
        if column.name in values or column.nullable or column.primary_key:
            continue
        if column.server_default is not None:
            continue
        if isinstance(column.type, sa.Boolean):
            values[column.name] = False
        elif isinstance(column.type, sa.Integer):
            values[column.name] = 0
        elif column.name.endswith("_json"):
            values[column.name] = "[]"
        else:
            values[column.name] = "test"
    with engine.begin() as conn:
        return int(conn.execute(table.insert().returning(table.c.id), values).scalar_one())


if __name__ == "__main__":
    for written in write_static_fixtures():
        sys.stdout.write(f"{written}\n")
