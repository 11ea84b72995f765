-- Before the batched lookups of enrolments by candidate (PostgreSQL): the table is filled
-- in the run's own transaction, so its statistics lag (none at all on a first national
-- load) and the planner takes `candidate_local = ANY(5 000 pseudonyms)` for 44 % of the
-- rows: a full scan of a million rows per batch where two index probes per pseudonym
-- are 5 × faster. Discouraged for this transaction only; the previous value is returned so
-- that index_lookups_end.sql puts it back.
SELECT current_setting('enable_seqscan') AS previous, set_config('enable_seqscan', 'off', true)
