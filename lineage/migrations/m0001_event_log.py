"""The append-only event log (hot tail), the registry of sealed segments, store metadata."""

SQL = [
    """
    CREATE TABLE event_log (
        seq BIGINT NOT NULL,
        event_id VARCHAR NOT NULL,
        lineage VARCHAR NOT NULL,
        branch VARCHAR NOT NULL,
        node VARCHAR,
        kind VARCHAR NOT NULL,
        actor_kind VARCHAR NOT NULL,
        actor VARCHAR NOT NULL,
        actor_node VARCHAR,
        occurred_at TIMESTAMPTZ NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        payload VARCHAR NOT NULL,
        schema_version INTEGER NOT NULL,
        caused_by VARCHAR,
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
