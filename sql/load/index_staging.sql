-- After the bulk writes: indexes for the set-based joins. PostgreSQL then gets fresh
-- statistics on the key columns (pipelines/load.py `_analyze`): autovacuum never analyses
-- temporary tables.
CREATE INDEX stg_session_key ON stg_session (carif_session_numero, dispensateur_siret);
CREATE INDEX stg_session_seq ON stg_session (seq);
CREATE INDEX stg_formation_key ON stg_formation (carif_formation_numero);
CREATE INDEX stg_action_key ON stg_action (carif_action_numero);
CREATE INDEX stg_formation_seen_key ON stg_formation_seen (carif_formation_numero, seq);
