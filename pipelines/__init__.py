"""Pipeline steps (fetch, load, ingest, report) and the `kairos-sync` CLI."""
