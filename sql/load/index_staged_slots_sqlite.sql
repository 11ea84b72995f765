-- SQLite only: the slot upsert and closing match on (kairos_session_id, slot_key), and SQLite
-- joins by index lookups, so without this index it would compare every slot with every staged
-- slot. PostgreSQL hash-joins the two sides (pipelines/load.py `_hash_joins_only`) and never
-- reads it: building it took 7 s of a national first load.
CREATE INDEX stg_slot_session ON stg_slot (kairos_session_id, slot_key);
