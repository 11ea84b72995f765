-- :n fresh ids from the serial sequence of :table, drawn before the rows are copied in,
-- so that rows of the same batch (an enrolment's events) can point at them.
SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)
