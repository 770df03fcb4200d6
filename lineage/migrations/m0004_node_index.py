"""The node index: the genealogy and per-node activity as plain tables, for instant browsing.

Why. The genealogy lives in ``node_created`` payloads (JSON, mostly in Parquet segments).
Finding a node's children means parsing every one of them: about 150 ms on a
1,000,000-node lineage, too slow for a tree that expands as you press a key. These
tables hold the same facts, already parsed: ``node_index`` has one row per node (its tree
parent, all parents, generation, label, number of children, and the counts the involvement
projection derives its autonomy level from: events by actor kind, diffs and diff lines,
human hands-on events), ``node_links`` the
second and further parents (merges, crossover), ``score_index`` one row per score and
``retracted_index`` the retracted events. With them, a tree expansion is a column scan of
a native table (a few milliseconds). ``first_seq``/``last_seq`` bound the seqs of the
events recorded on a node, so reading its timeline skips the Parquet row groups outside.

A node that has events but no ``node_created`` (yet) has a row with ``created_seq`` NULL,
so its events are counted and it is visible rather than lost.

They are derived data, never a source of truth: ``lineage.node_index.catch_up`` folds
every event after ``node_index_state.last_seq`` into them (incrementally, so keeping up
with a live loop costs milliseconds), and dropping them loses nothing.
"""

SQL = [
    """
    CREATE TABLE node_index (
        lineage VARCHAR NOT NULL,
        node VARCHAR NOT NULL,
        branch VARCHAR,
        parent VARCHAR,
        parents VARCHAR[],
        generation INTEGER NOT NULL,
        label VARCHAR,
        missing_parent BOOLEAN NOT NULL,
        actor VARCHAR,
        created_seq BIGINT,
        created_at TIMESTAMPTZ,
        children INTEGER NOT NULL,
        events INTEGER NOT NULL,
        human INTEGER NOT NULL,
        ai INTEGER NOT NULL,
        system INTEGER NOT NULL,
        diffs INTEGER NOT NULL,
        human_diffs INTEGER NOT NULL,
        diff_lines BIGINT NOT NULL,
        human_lines BIGINT NOT NULL,
        human_hands_on INTEGER NOT NULL,
        last_seq BIGINT NOT NULL,
        first_seq BIGINT
    )
    """,
    "CREATE TABLE node_links (lineage VARCHAR NOT NULL, parent VARCHAR NOT NULL, node VARCHAR NOT NULL, seq BIGINT NOT NULL)",
    """
    CREATE TABLE score_index (
        lineage VARCHAR NOT NULL,
        node VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        split VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        higher_is_better BOOLEAN NOT NULL,
        actor VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL
    )
    """,
    "CREATE TABLE retracted_index (target VARCHAR NOT NULL, retraction VARCHAR NOT NULL, seq BIGINT NOT NULL)",
    "CREATE TABLE node_index_state (last_seq BIGINT NOT NULL)",
    "INSERT INTO node_index_state VALUES (0)",
]
