-- {kairos_checked}: a KAIROS modalities export covering the session `s`'s source was loaded
-- (succeeded, or unchanged) on or after :kairos_seen_since (the as-of date minus the
-- configured age, 2 days by default): what KAIROS offers for `s` is then known, and "no
-- open modality" means blocked, not merely "none visible in the offer"
-- (docs/quality-checks.md, "Blocked, or KAIROS not checked").
EXISTS (
    SELECT 1
    FROM kairos_export_coverage c
    JOIN run_ledger l ON l.id = c.run_id
    WHERE c.source = s.source
      AND c.run_kind = 'modalities'
      AND l.status IN ('succeeded', 'noop')
      AND c.seen_on >= :kairos_seen_since
)
