-- One rejected record (no personal data: numero, location and schema messages only).
INSERT INTO quarantine (run_id, source, file, record_kind, record_key, line, path, reasons, created_at)
VALUES (:run_id, :source, :file, :record_kind, :record_key, :line, :path, :reasons, :created_at);
