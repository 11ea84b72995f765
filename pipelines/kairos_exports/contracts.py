"""Column contracts and value vocabularies of the three KAIROS / France Travail exports.

Canonical column names are `reading.normalise_header` forms of the documented headers
(DOMAIN.md "Public export formats around KAIROS"; the appointments contract is ours,
docs/kairos-exports.md). `REQUIRED_*` map canonical names to the documented spelling,
which error messages quote. `PERSONAL_*` columns are read by the csv module like any
other, then dropped: nothing in this package copies them anywhere.
"""

from __future__ import annotations

from typing import Final

# -- adherents -------------------------------------------------------------------------
REQUIRED_ADHERENTS: Final = {
    "siret": "SIRET",
    "libelle": "LIBELLE",
    "convention": "convention",
    "date_debut": "date début",
    "date_fin": "date fin",
}
PERSONAL_ADHERENTS: Final = frozenset({"nom_rgc", "prenom_rgc", "mail_rgc", "telephone_rgc"})

# -- training plans --------------------------------------------------------------------
REQUIRED_TRAINING_PLANS: Final = {
    c: c
    for c in (
        "dn_individu_national",
        "c_individulocal",
        "dn_session_id",
        "dc_numeroicsession",
        "dc_numeroicaction",
        "dc_siret",
        "dc_siretformateur",
        "dd_datedebutplanformation",
        "dd_datefinplanformation",
    )
}
# Real exports name the dispensateur columns after the "organisme formateur"; the shorter
# names of the DOMAIN digest occur too (both accepted, by header name, never by position).
TRAINING_PLAN_ALIASES: Final = {
    "dc_siretorganismeformateur": "dc_siretformateur",
    "dc_lblorganismeorganismeformateur": "dc_lblorganismeformateur",
    "dc_raisonsocialeorganismeformateur": "dc_raisonsocialeformateur",
}
PERSONAL_TRAINING_PLANS: Final = frozenset(
    {
        "c_nomcorrespondance",
        "c_prenomcorrespondance",
        "c_adresseemail",
        "c_telephone1",
        "c_telephone2",
    }
)

# -- appointments (our contract) -------------------------------------------------------
REQUIRED_APPOINTMENTS: Final = {
    c: c
    for c in (
        "numero_session_carif",
        "siret_dispensateur",
        "modalite",
        "identifiant_candidat",
        "presence",
        "resultat",
        "statut_rdv",
        "date_maj",
    )
}
OPTIONAL_APPOINTMENTS: Final = (
    "numero_action_carif",
    "date_rdv",
    "heure_debut",
    "heure_fin",
    "periode_debut",
    "periode_fin",
    "capacite",
    "adresse",
    "code_postal",
    "ville",
    "a_distance",
    "identifiant_national",
    "prise_de_contact",
    "statut_inscription",
    "date_entree",
    "date_sortie",
    "origine_prescription",
)
# Tolerated (KAIROS "Exporter tout le tableau" has them) and never read.
PERSONAL_APPOINTMENTS: Final = frozenset(
    {"nom_prenom", "nom", "prenom", "email", "mail", "telephone", "commentaire"}
)
APPOINTMENT_ALIASES: Final = {
    "n_de": "identifiant_candidat",
    "n°_de": "identifiant_candidat",
    "numero_de": "identifiant_candidat",
    "identifiant": "identifiant_candidat",
    "dc_numeroicsession": "numero_session_carif",
    "session_carif": "numero_session_carif",
    "siret": "siret_dispensateur",
    "modalite_de_recrutement": "modalite",
    "derniere_mise_a_jour": "date_maj",
}

# modality → (recruitment_slot.modality, LHEO dict-modalite-recrutement code)
MODALITIES: Final = {
    "ico": ("ico", 9),
    "ric": ("ico", 9),
    "information_collective": ("ico", 9),
    "reunion_d'information_collective": ("ico", 9),
    "reunion_d_information_collective": ("ico", 9),
    "9": ("ico", 9),
    "rdvi": ("rdvi", 8),
    "rdv_individuel": ("rdvi", 8),
    "rendez_vous_individuel": ("rdvi", 8),
    "entretien_ou_rdv_individuel": ("rdvi", 8),
    "8": ("rdvi", 8),
    "candidature": ("candidature", 7),
    "inscription_sur_candidature": ("candidature", 7),
    "7": ("candidature", 7),
}
MODALITY_CODES: Final = {k: v[0] for k, v in MODALITIES.items()}

PRESENCE: Final = {
    "present": "present",
    "presente": "present",
    "p": "present",
    "oui": "present",
    "absent": "absent",
    "absente": "absent",
    "abs": "absent",
    "non": "absent",
}
RESULT: Final = {
    "retenu": "retenu",
    "retenue": "retenu",
    "retenu_en_attente": "retenu_en_attente",
    "retenu_mis_en_attente": "retenu_en_attente",
    "mis_en_attente": "retenu_en_attente",
    "en_attente": "retenu_en_attente",
    "non_retenu": "non_retenu",
    "non_retenue": "non_retenu",
}
APPOINTMENT_STATUS: Final = {
    "inscrit": "inscrit",
    "positionne": "inscrit",
    "rdv_annule": "rdv_annule",
    "annule": "rdv_annule",
    "rdv_supprime": "rdv_supprime",
    "supprime": "rdv_supprime",
}
CONTACT: Final = {
    "contacte": "contacte",
    "injoignable": "injoignable",
    "refus": "refus_candidat",
    "refus_candidat": "refus_candidat",
}
REGISTRATION: Final = {
    "a_valider": "a_valider",
    "a_valider_pole_emploi": "a_valider",
    "a_valider_france_travail": "a_valider",
    "inscrit": "inscrit",
    "inscrit_en_formation": "inscrit",
    "entre": "entre",
    "entree": "entre",
    "entre_en_formation": "entre",
    "absent_entree": "absent_entree",
    "absent_a_l'entree": "absent_entree",
    "absent_a_l_entree": "absent_entree",
    "interruption": "interruption",
    "abandon": "abandon",
    "sorti": "sorti",
    "sortie": "sorti",
}
ORIGINS: Final = {
    "france_travail": "france_travail",
    "pole_emploi": "france_travail",
    "ft": "france_travail",
    "pe": "france_travail",
    "audef": "france_travail",
    "aude": "france_travail",
    "mission_locale": "mission_locale",
    "milo": "mission_locale",
    "cap_emploi": "cap_emploi",
    "of": "of",
    "organisme_de_formation": "of",
    "candidat": "candidat",
    "candidature_spontanee": "candidat",
    "auto_positionnement": "candidat",
}
