-- After the batched lookups of enrolments (index_lookups_begin.sql): the setting as it was.
SELECT set_config('enable_seqscan', :previous, true)
