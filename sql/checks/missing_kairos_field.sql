-- missing_kairos_field: a current, not ended session lacks a field KAIROS shows on its
-- screens 1 to 4 (Normandie deck "SMF et KAIROS", "Saisir ma formation et KAIROS", screen by screen; DOMAIN.md
-- table): 1 intitulé, formacode principal, objectif, contenu; 2 durée, dates; 3 lieu de
-- formation; 4 financeur. Corrections are made upstream in the CARIF-OREF tool ("Rappel : les obligations légales" deck:
-- "Toutes les corrections … sont à réaliser via le CARIF OREF").
-- detail_key: the missing fields, comma-separated, in screen order (|| works on both
-- PostgreSQL and SQLite). Blank text counts as missing, and so does a placeholder (`-`,
-- `.`, `Non renseigné`, `NR`: the loader lists such columns in placeholder_fields,
-- transforms/placeholders.py, keeping the text as written); a duration of 0 h too.
-- `{batch}` = kairos_session.
SELECT
    kairos_session_id,
    source,
    carif_formation_numero,
    carif_action_numero,
    carif_session_numero,
    dispensateur_siret,
    mandataire_siret,
    departement,
    missing AS detail_key,
    CAST(NULL AS INTEGER) AS detail_count,
    CAST(NULL AS DATE) AS detail_date
FROM (
    SELECT
        s.id AS kairos_session_id,
        s.source,
        s.carif_formation_numero,
        s.carif_action_numero,
        s.carif_session_numero,
        s.dispensateur_siret,
        s.mandataire_siret,
        s.place_departement AS departement,
        CASE WHEN TRIM(COALESCE(s.intitule, '')) = ''
                  OR s.placeholders LIKE '%,intitule,%' THEN 'intitule,' ELSE '' END
        || CASE WHEN TRIM(COALESCE(s.main_formacode, '')) = ''
                     OR s.placeholders LIKE '%,main_formacode,%' THEN 'formacode,' ELSE '' END
        || CASE WHEN TRIM(COALESCE(s.objectif, '')) = ''
                     OR s.placeholders LIKE '%,objectif,%' THEN 'objectif,' ELSE '' END
        || CASE WHEN TRIM(COALESCE(s.contenu, '')) = ''
                     OR s.placeholders LIKE '%,contenu,%' THEN 'contenu,' ELSE '' END
        || CASE WHEN COALESCE(s.duration_hours, 0) <= 0 THEN 'duree,' ELSE '' END
        || CASE WHEN s.debut IS NULL THEN 'debut,' ELSE '' END
        || CASE WHEN s.fin IS NULL THEN 'fin,' ELSE '' END
        || CASE
               WHEN (TRIM(COALESCE(s.place_city, '')) = ''
                     OR s.placeholders LIKE '%,place_city,%')
                AND (TRIM(COALESCE(s.place_postal_code, '')) = ''
                     OR s.placeholders LIKE '%,place_postal_code,%')
               THEN 'lieu,'
               ELSE ''
           END
        || CASE WHEN COALESCE(s.funders_json, '[]') = '[]' THEN 'financeur,' ELSE '' END
        AS missing
    FROM (
        -- ',a,b,' so that a LIKE '%,a,%' finds a whole column name
        SELECT b.*, ',' || COALESCE(b.placeholder_fields, '') || ',' AS placeholders
        FROM {batch} b
        WHERE b.closed_at IS NULL
          AND (b.fin IS NULL OR b.fin >= :as_of)
    ) s
) checked
WHERE missing <> ''
