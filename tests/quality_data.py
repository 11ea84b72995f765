"""Test data for the quality rules: rows inserted with SQLAlchemy Core into the migrated
schema (0001-0003), with just enough columns for the rules, and nothing personal.

`QualityData(url)` migrates the database, opens a run, and offers one method per table;
every method returns the new row's id. Defaults describe a healthy session: fixed dates,
recruiting, valid SIRETs, every KAIROS field filled, funded places.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import sqlalchemy as sa
from stdnum import luhn

from core.db import get_engine, migrate

NOW = dt.datetime(2026, 3, 16, 6, 0, tzinfo=dt.UTC)
AS_OF = dt.date(2026, 3, 16)


def siret(siren8: str, nic4: str = "0001") -> str:
    """A valid SIRET: a Luhn-valid SIREN (8 digits + key), a NIC, a Luhn key on the whole."""
    siren = siren8 + luhn.calc_check_digit(siren8)
    body = siren + nic4
    return body + luhn.calc_check_digit(body)


OF_A = siret("12345678")
OF_B = siret("23456789")
OF_C = siret("34567890")


def days(n: int) -> dt.date:
    return AS_OF + dt.timedelta(days=n)


class QualityData:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)
        migrate(self.engine)
        self.meta = sa.MetaData()
        self.meta.reflect(self.engine)
        self._numbers = itertools.count(1)
        with self.engine.begin() as conn:
            self.run_id = int(
                conn.execute(
                    sa.insert(self.meta.tables["run_ledger"])
                    .values(run_kind="load", source="test", started_at=NOW, status="succeeded")
                    .returning(self.meta.tables["run_ledger"].c.id)
                ).scalar_one()
            )

    def _insert(self, table: str, values: dict[str, Any]) -> int:
        t = self.meta.tables[table]
        with self.engine.begin() as conn:
            return int(conn.execute(sa.insert(t).values(**values).returning(t.c.id)).scalar_one())

    def _seen(self) -> dict[str, Any]:
        return {
            "content_hash": "h",
            "first_seen_run_id": self.run_id,
            "last_seen_run_id": self.run_id,
        }

    def session(self, **over: Any) -> int:
        return self._insert("kairos_session", self._session_values(**over))

    def sessions(self, count: int, **over: Any) -> None:
        """`count` sessions in one statement (a large report without a slow test)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(self.meta.tables["kairos_session"]),
                [self._session_values(**over) for _ in range(count)],
            )

    def _session_values(self, **over: Any) -> dict[str, Any]:
        n = next(self._numbers)
        values: dict[str, Any] = {
            "source": "test",
            "carif_formation_numero": f"F{n}",
            "carif_action_numero": f"A{n}",
            "carif_session_numero": f"S{n}",
            "session_numero_derived": False,
            "dispensateur_siret": OF_A,
            "dispensateur_siret_valid": True,
            "dispensateur_raison_sociale": "Organisme Alpha",
            "mandataire_siret": OF_A,
            "mandataire_siret_valid": True,
            "mandataire_raison_sociale": "Organisme Alpha",
            "mandataire_numero_activite": "28140000014",
            "split_reason": "single",
            "lheo_version": "2.3",
            "intitule": f"Formation {n}",
            "main_formacode": "31054",
            "objectif_general": 6,
            "objectif": "Acquérir les bases",
            "contenu": "Modules 1 à 4",
            "duration_hours": 400,
            "modalites_entrees_sorties": 0,
            "etat_recrutement": 1,
            "debut": days(30),
            "debut_raw": "x",
            "debut_precision": "day",
            "fin": days(120),
            "fin_raw": "x",
            "fin_precision": "day",
            "place_postal_code": "14000",
            "place_city": "Caen",
            "place_departement": "14",
            "places_json": '[{"kind":"lieu","name":"Caen"}]',
            "funders_json": '[{"code":"2","places":12}]',
            "funded_places_total": 12,
            "funded_places_lheo": 12,
            "funded_places_shared_by": 1,
            **self._seen(),
        }
        values.update(over)
        return values

    def slot(self, session_id: int, modality: str, **over: Any) -> int:
        n = next(self._numbers)
        values: dict[str, Any] = {
            "kairos_session_id": session_id,
            "origin": "kairos",
            "slot_key": f"k{n}",
            "modality": modality,
            "starts_on": days(5),
            "ends_on": None,
            "capacity": None,
            **self._seen(),
        }
        values.update(over)
        return self._insert("recruitment_slot", values)

    def enrolment(
        self,
        session_id: int,
        status: str,
        status_date: dt.date,
        *,
        slot_key: str | None = None,
        slot_id: int | None = None,
        dispensateur: str = OF_A,
        planned_start: dt.date | None = None,
    ) -> int:
        n = next(self._numbers)
        enrolment_id = self._insert(
            "enrolment",
            {
                "enrolment_key": f"e{n}",
                "candidate": f"pseudo{n:038d}",  # 44 characters, like a real pseudonym
                "session_key": f"S{session_id}",
                "dispensateur_siret": dispensateur,
                "kairos_session_id": session_id,
                "first_source": "appointments",
                "last_source": "appointments",
                "current_status": status,
                "status_date": status_date,
                "current_slot_key": slot_key,
                "planned_start": planned_start,
                "content_hash": "h",
                "first_seen_run_id": self.run_id,
                "last_seen_run_id": self.run_id,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
        self._insert(
            "enrolment_event",
            {
                "enrolment_id": enrolment_id,
                "seq": 1,
                "status": "positionne",
                "event_date": status_date,
                "slot_key": slot_key,
                "recruitment_slot_id": slot_id,
                "source_kind": "appointments",
                "run_id": self.run_id,
                "recorded_at": NOW,
            },
        )
        return enrolment_id

    def adherent(
        self, siret_: str, start: dt.date | None = None, end: dt.date | None = None
    ) -> int:
        n = next(self._numbers)
        return self._insert(
            "kairos_adherent",
            {
                "adherent_key": f"{siret_}|c{n}|{start}",
                "siret": siret_,
                "libelle": "OF",
                "convention": f"c{n}",
                "convention_start": start,
                "convention_end": end,
                "content_hash": "h",
                "first_seen_run_id": self.run_id,
                "last_seen_run_id": self.run_id,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )

    def kairos_export(
        self, seen_on: dt.date, source: str = "test", status: str = "succeeded"
    ) -> int:
        """A KAIROS modalities export run that covered `source` on `seen_on`."""
        ledger = self.meta.tables["run_ledger"]
        with self.engine.begin() as conn:
            run_id = int(
                conn.execute(
                    sa.insert(ledger)
                    .values(run_kind="modalities", source="kairos", started_at=NOW, status=status)
                    .returning(ledger.c.id)
                ).scalar_one()
            )
            conn.execute(
                sa.insert(self.meta.tables["kairos_export_coverage"]).values(
                    run_id=run_id, run_kind="modalities", source=source, seen_on=seen_on
                )
            )
        return run_id

    def update(self, table: str, row_id: int, **values: Any) -> None:
        t = self.meta.tables[table]
        with self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == row_id).values(**values))

    def organisation(self, siret_: str, raison_sociale: str, numero_activite: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(self.meta.tables["organisation"]).values(
                    siret=siret_,
                    siret_valid=True,
                    raison_sociale=raison_sociale,
                    numero_activite=numero_activite,
                    **self._seen(),
                )
            )

    def dispose(self) -> None:
        self.engine.dispose()
