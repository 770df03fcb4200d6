"""The append-only event log (hot tail), the registry of sealed segments, store metadata."""


SQL = [
    # The hot tail keeps each event as its canonical body (the exact text the hash covers)
    # rather than sixteen columns: a durable single append then costs one narrow row, and
    # the `events` view splits the body back into columns. Sealed segments are columnar.
    """
    CREATE TABLE event_log (
        seq BIGINT NOT NULL,
        body VARCHAR NOT NULL,
        prev_hash VARCHAR NOT NULL,
        hash VARCHAR NOT NULL
    )
    """,
    """
    CREATE TABLE segments (
        file VARCHAR PRIMARY KEY,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        events BIGINT NOT NULL,
        last_hash VARCHAR NOT NULL,
        file_sha256 VARCHAR NOT NULL,
        bytes BIGINT NOT NULL,
        sealed_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
]
