"""How far ingest got in each source file, so growing files continue where they left off.

One row per source (a file, named relative to the store when it lives inside it). For
JSONL, ``position`` is the byte offset just past the last complete line taken (and
``lines`` how many lines that is); for Parquet, the number of rows taken. The row is
updated in the same transaction as the events of each batch, so after a crash the next
ingest resumes exactly after the last committed batch. ``fingerprint`` (SHA-256 of the
first ``fingerprint_bytes`` bytes, or of a Parquet footer) notices a file that was
replaced rather than grown; such a file is read again from the start, which adds nothing
already stored because event ids decide what is new.
"""

SQL = [
    """
    CREATE TABLE IF NOT EXISTS ingest_progress (
        source VARCHAR PRIMARY KEY,
        path VARCHAR NOT NULL,
        format VARCHAR NOT NULL,
        position BIGINT NOT NULL,
        lines BIGINT NOT NULL,
        fingerprint VARCHAR NOT NULL,
        fingerprint_bytes BIGINT NOT NULL,
        ingested BIGINT NOT NULL,
        duplicates BIGINT NOT NULL,
        quarantined BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
]
