"""The statuses of a candidate or trainee on a KAIROS session, as stored in the database.

Values are stored (`kairos_enrolment.status`, its events) and exported, and the quality
checks validate the stored column against them: a vocabulary of the data, so it lives in
the base. Which status may follow which is the lifecycle's business
(pipelines/kairos_exports/lifecycle.py).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Enrolment statuses. Values are stored in the database and exported."""

    POSITIONNE = "positionne"  # inscrit sur une ICO / un RDVI / une plage de candidature
    CONTACTE = "contacte"  # candidature: prise de contact réussie (SOFI–Ouiform–Kairos deck)
    INJOIGNABLE = "injoignable"  # candidature: candidat injoignable (SOFI–Ouiform–Kairos deck)
    REFUS_CANDIDAT = "refus_candidat"  # candidature: le candidat refuse (SOFI–Ouiform–Kairos deck)
    PRESENT = "present"  # présent à l'ICO / au RDVI / à l'entretien
    ABSENT = "absent"  # absent à l'ICO / au RDVI / à l'entretien
    RDV_ANNULE = "rdv_annule"  # RDV annulé, à l'initiative du demandeur d'emploi (obligations deck)
    RDV_SUPPRIME = "rdv_supprime"  # plage de RDV supprimée par l'OF (obligations deck)
    RETENU = "retenu"
    RETENU_EN_ATTENTE = "retenu_en_attente"  # retenu mis en attente (liste d'attente)
    NON_RETENU = "non_retenu"
    A_VALIDER = "a_valider"  # à valider par France Travail / Mission Locale / Cap emploi
    INSCRIT = "inscrit"  # inscription validée (AIS générée)
    ENTRE = "entre"  # entrée effective en formation (AES)
    ABSENT_ENTREE = "absent_entree"  # absent à l'entrée: désistement (FAQ Occitanie 26)
    INTERRUPTION = "interruption"  # période d'interruption (> 15 jours, obligations deck)
    ABANDON = "abandon"
    SORTI = "sorti"  # sortie de formation
