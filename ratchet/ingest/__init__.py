"""Ingest: input files to redacted, validated, exactly-once Parquet parts (see ``pipeline``)."""
