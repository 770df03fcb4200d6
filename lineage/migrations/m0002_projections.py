"""Projections: genealogy, scores, artifacts, involvement and oversight signals as SQL.

Every projection is a DuckDB table macro over the ``events`` view, taking the cut-off
``max_seq`` (``nodes_at(120)`` is the genealogy as it stood after event 120), plus a plain
view of the same name without ``_at`` for "now". Nothing here stores derived rows: any
DuckDB client that opens the file sees the projections of every event appended so far,
and a correction is a new event (``retraction``), never an edit.

Thresholds and path globs the signals use live in the ``settings`` table (key, JSON or
number as text, description) so a user can tune them with plain SQL.

Column-by-column documentation: docs/sql.md.
"""

from lineage.segments import events_view_sql

NOW = 9223372036854775807  # the largest seq: "as of now"

# The research-loop stage of each kind, as in schemas.payloads.STAGE (a test keeps them equal).
_STAGE_CASE = """CASE kind
        WHEN 'proposal' THEN 'propose'
        WHEN 'code_diff' THEN 'implement'
        WHEN 'dataset' THEN 'experiment'
        WHEN 'run' THEN 'experiment'
        WHEN 'checkpoint' THEN 'experiment'
        WHEN 'score' THEN 'validate'
        WHEN 'review' THEN 'validate'
        WHEN 'annotation' THEN 'learn'
        WHEN 'selection' THEN 'choose'
    END"""

STAGES = ("propose", "implement", "experiment", "validate", "learn", "choose")


def _performer(stage: str) -> str:
    """Who performed a stage of a node's making: one actor kind, 'mixed' or 'none'."""
    return f"""CASE count(DISTINCT actor_kind) FILTER (WHERE stage = '{stage}')
            WHEN 0 THEN 'none'
            WHEN 1 THEN min(actor_kind) FILTER (WHERE stage = '{stage}')
            ELSE 'mixed' END AS {stage}"""


def _walk_up(name: str, candidates: str) -> str:
    """A recursive CTE ``name(lineage, node, target, anc)`` walking from each candidate
    (lineage, node, target) up the parent edges ``e`` until it meets ``target``: a row with
    ``anc = target`` means target is an ancestor of node. Edges always point from an
    earlier node to a later one, so the walk ends."""
    return f"""{name}(lineage, node, target, anc) AS (
        SELECT c.lineage, c.node, c.target, e.parent
        FROM {candidates} c JOIN e ON e.lineage = c.lineage AND e.child = c.node
        UNION
        SELECT w.lineage, w.node, w.target, e.parent
        FROM {name} w JOIN e ON e.lineage = w.lineage AND e.child = w.anc
        WHERE w.anc <> w.target
    )"""


_SETTINGS = [
    ("evaluator_globs",
     '["eval*", "*/eval*", "*_eval*", "*-eval*", "*evaluat*", "test*", "*/test*", "*_test.*", '
     '"*-test.*", "*tests/*", "*conftest*", "*grader*", "*grading*", "*judge*", "*scorer*", '
     '"*scoring*", "*benchmark*", "metric*", "*/metric*"]',
     "JSON list of globs (case-insensitive, * also crosses /) marking evaluation or test code: "
     "a code_diff touching a matching path raises evaluator_touched"),
    ("heldout_splits", '["heldout", "held_out", "held-out", "hidden", "private"]',
     "JSON list of score splits that are held out (the rest, minus train_splits, are public)"),
    ("train_splits", '["train", "training"]',
     "JSON list of score splits measured on training data (neither public nor held out)"),
    ("jump_min_relative_gain", "0.2",
     "suspicious_jump: smallest gain over the parent, as a fraction of the parent's |value|"),
    ("jump_min_absolute_gain", "0",
     "suspicious_jump: smallest gain over the parent in the metric's own units"),
    ("jump_max_diff_lines", "5",
     "suspicious_jump: largest diff (lines added + removed) still counted as tiny"),
    ("heldout_gap_min_rise", "0",
     "heldout_gap: the public score must rise over the parent by more than this"),
    ("heldout_gap_min_drop", "0",
     "heldout_gap: the held-out score must fall below the parent's by more than this"),
]


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_placeholder_events = events_view_sql([])
assert _placeholder_events.startswith("CREATE OR REPLACE VIEW events AS ")
_placeholder_events = _placeholder_events.replace("CREATE OR REPLACE VIEW", "CREATE VIEW IF NOT EXISTS", 1)



# The roll-up columns shared by involvement_by_generation and involvement_by_lineage:
# shares pooled over the group's events, lines and decisions, not averaged per node.
_ROLLUP = """sum(events)::BIGINT AS events,
           sum(human_events) / sum(events) AS human_share,
           sum(ai_events) / sum(events) AS ai_share,
           sum(system_events) / sum(events) AS system_share,
           sum(diff_lines)::BIGINT AS diff_lines,
           sum(human_lines) / nullif(sum(diff_lines), 0) AS human_line_share,
           sum(ai_lines) / nullif(sum(diff_lines), 0) AS ai_line_share,
           sum(system_lines) / nullif(sum(diff_lines), 0) AS system_line_share,
           sum(decisions)::BIGINT AS decisions,
           sum(human_decisions) / nullif(sum(decisions), 0) AS human_decision_share,
           sum(ai_decisions) / nullif(sum(decisions), 0) AS ai_decision_share,
           sum(system_decisions) / nullif(sum(decisions), 0) AS system_decision_share,
           avg(autonomy_level) AS mean_autonomy,
           count(*) FILTER (WHERE autonomy_level = 0) AS level0,
           count(*) FILTER (WHERE autonomy_level = 1) AS level1,
           count(*) FILTER (WHERE autonomy_level = 2) AS level2,
           count(*) FILTER (WHERE autonomy_level = 3) AS level3,
           count(*) FILTER (WHERE autonomy_level IS NULL) AS level_unknown,
           count(*) FILTER (WHERE self_built) AS self_built,
           max(recursion_depth) AS max_recursion_depth"""

SQL = [
    # -- settings ------------------------------------------------------------------------
    "CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, description VARCHAR)",
    "INSERT INTO settings VALUES " + ", ".join(f"({_q(k)}, {_q(v)}, {_q(d)})" for k, v, d in _SETTINGS),
    """CREATE MACRO setting_list(setting_key) AS (
        SELECT CAST(json_extract_string(value::JSON, '$[*]') AS VARCHAR[]) FROM settings WHERE key = setting_key)""",
    """CREATE MACRO setting_double(setting_key) AS (
        SELECT TRY_CAST(value AS DOUBLE) FROM settings WHERE key = setting_key)""",
    # The macros below are checked against `events` when created; on a new store the
    # store defines the real view right after migrating, so stand one in for now.
    _placeholder_events,
    # -- events that count ---------------------------------------------------------------
    # A retraction removes its target; a retracted retraction removes nothing.
    """CREATE MACRO effective_events_at(max_seq) AS TABLE
    WITH upto AS (SELECT * FROM events WHERE seq <= max_seq),
    named AS (
        SELECT event_id, lower(payload->>'event_id') AS t FROM upto WHERE kind = 'retraction'
    ),
    retractions AS (
        SELECT event_id,
               CASE WHEN length(t) = 32
                    THEN t[1:8] || '-' || t[9:12] || '-' || t[13:16] || '-' || t[17:20] || '-' || t[21:32]
                    ELSE t END AS target
        FROM named
    ),
    standing AS (
        SELECT r.target FROM retractions r ANTI JOIN retractions x ON x.target = r.event_id
    ),
    -- Attribution corrections (`lineage attribute`): an annotation with topic
    -- 'attribution' re-assigns the listed events to `attribute_to`; the latest standing
    -- correction of an event wins. The corrected events themselves are never edited.
    corrections AS (
        SELECT c.seq, c.payload->>'attribute_to' AS actor,
               unnest(CAST(json_extract(c.payload, '$.events') AS VARCHAR[])) AS target
        FROM upto c ANTI JOIN standing s ON s.target = c.event_id
        WHERE c.kind = 'annotation' AND c.payload->>'topic' = 'attribution'
    ),
    corrected AS (SELECT target, arg_max(actor, seq) AS actor FROM corrections GROUP BY target)
    SELECT u.* REPLACE (coalesce(k.actor, u.actor) AS actor,
                        coalesce(split_part(k.actor, ':', 1), u.actor_kind) AS actor_kind,
                        CASE WHEN k.actor IS NULL OR k.actor = u.actor THEN u.actor_node END AS actor_node)
    FROM upto u ANTI JOIN standing s ON s.target = u.event_id
    LEFT JOIN corrected k ON k.target = u.event_id
    WHERE u.kind <> 'retraction'
    """,
    # -- the genealogy ------------------------------------------------------------------
    # A node is defined by its first standing node_created event; it belongs to that
    # event's branch.
    """CREATE MACRO node_defs_at(max_seq) AS TABLE
    SELECT lineage, node, branch,
           seq AS created_seq, event_id AS created_event, occurred_at AS created_at,
           actor AS created_by, payload->>'label' AS label, payload->>'status' AS declared_status,
           coalesce(CAST(json_extract_string(payload, '$.parents[*]') AS VARCHAR[]), []::VARCHAR[]) AS parents
    FROM effective_events_at(max_seq)
    WHERE kind = 'node_created' AND node IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY lineage, node ORDER BY seq) = 1
    """,
    # An edge exists when the parent was created before the child; a parent named before
    # it exists is a missing parent. This keeps the genealogy acyclic by construction.
    """CREATE MACRO edges_at(max_seq) AS TABLE
    WITH d AS (SELECT * FROM node_defs_at(max_seq)),
    declared AS (
        SELECT lineage, node AS child, branch AS child_branch, created_seq, created_event,
               unnest(parents) AS parent, unnest(range(1, len(parents) + 1)) AS position
        FROM d
    )
    SELECT x.lineage, x.parent, x.child, min(x.position) AS position,
           p.branch AS parent_branch, x.child_branch, x.created_seq AS seq, x.created_event AS event_id
    FROM declared x JOIN d p ON p.lineage = x.lineage AND p.node = x.parent AND p.created_seq < x.created_seq
    GROUP BY x.lineage, x.parent, x.child, p.branch, x.child_branch, x.created_seq, x.created_event
    """,
    # Generation: the longest path from a root. A node whose parents are all missing is
    # generation 1 (its missing parent stands for generation 0), as in the Tracker.
    # (A plain UNION over (node, length) then max() is much faster in DuckDB than a
    # USING KEY recursion that consults the recurring table.)
    """CREATE MACRO generations_at(max_seq) AS TABLE
    WITH RECURSIVE
    d AS MATERIALIZED (SELECT lineage, node, parents FROM node_defs_at(max_seq)),
    e AS MATERIALIZED (SELECT lineage, parent, child FROM edges_at(max_seq)),
    g(lineage, node, generation) AS (
        SELECT d.lineage, d.node, CASE WHEN len(d.parents) = 0 THEN 0 ELSE 1 END
        FROM d ANTI JOIN e ON e.lineage = d.lineage AND e.child = d.node
        UNION
        SELECT e.lineage, e.child, g.generation + 1
        FROM g JOIN e ON e.lineage = g.lineage AND e.parent = g.node
    )
    SELECT lineage, node, max(generation)::INTEGER AS generation FROM g GROUP BY lineage, node
    """,
    # The making of a node: its standing events on its own branch. A selection belongs to
    # the node it chose; branch_created and replay events are facts about the lineage and
    # about verification, not about how the node was made.
    f"""CREATE MACRO node_events_at(max_seq) AS TABLE
    WITH ev AS (
        SELECT *, CASE WHEN kind = 'selection' THEN coalesce(payload->>'node', node) ELSE node END AS subject
        FROM effective_events_at(max_seq)
        WHERE kind NOT IN ('branch_created', 'replay')
          -- attribution corrections are bookkeeping about the making, not part of it
          AND NOT (kind = 'annotation' AND coalesce(payload->>'topic', '') = 'attribution')
    )
    SELECT ev.lineage, d.branch, d.node, ev.seq, ev.event_id, ev.kind,
           {_STAGE_CASE.replace("CASE kind", "CASE ev.kind")} AS stage,
           ev.actor_kind, ev.actor, ev.actor_node, ev.occurred_at, ev.payload, ev.caused_by
    FROM ev JOIN node_defs_at(max_seq) d
      ON d.lineage = ev.lineage AND d.node = ev.subject AND d.branch = ev.branch
    WHERE ev.kind <> 'node_created' OR ev.seq = d.created_seq
    """,
    # -- scores and artifacts ------------------------------------------------------------
    """CREATE MACRO scores_at(max_seq) AS TABLE
    WITH s AS (
        SELECT lineage, branch, node, seq, event_id, occurred_at, actor_kind, actor, actor_node,
               payload->>'metric' AS metric, coalesce(payload->>'split', 'public') AS split,
               CAST(payload->>'value' AS DOUBLE) AS value,
               coalesce(CAST(payload->>'higher_is_better' AS BOOLEAN), true) AS higher_is_better
        FROM node_events_at(max_seq) WHERE kind = 'score'
    )
    SELECT lineage, branch, node, metric, split, metric || '@' || split AS metric_key, value,
           higher_is_better,
           CASE WHEN list_contains(setting_list('heldout_splits'), split) THEN 'heldout'
                WHEN list_contains(setting_list('train_splits'), split) THEN 'train'
                ELSE 'public' END AS split_kind,
           row_number() OVER (PARTITION BY lineage, node, metric, split ORDER BY seq DESC) = 1 AS is_latest,
           actor_kind, actor, actor_node, seq, event_id, occurred_at
    FROM s
    """,
    """CREATE MACRO artifacts_at(max_seq) AS TABLE
    WITH ev AS (
        SELECT lineage, branch, node, seq, event_id, kind, actor_kind, actor, occurred_at, payload
        FROM node_events_at(max_seq) WHERE kind IN ('dataset', 'checkpoint', 'code_diff')
        UNION ALL
        SELECT lineage, branch, NULL, seq, event_id, kind, actor_kind, actor, occurred_at, payload
        FROM effective_events_at(max_seq) WHERE node IS NULL AND kind IN ('dataset', 'checkpoint')
    ),
    a AS (
        SELECT lineage, branch, node, 'dataset' AS artifact, payload->>'name' AS name,
               payload->>'role' AS role, payload->>'uri' AS uri, payload->>'content_hash' AS content_hash,
               TRY_CAST(payload->>'bytes' AS BIGINT) AS bytes, TRY_CAST(payload->>'rows' AS BIGINT) AS rows,
               NULL::BIGINT AS step, actor_kind, actor, seq, event_id, occurred_at
        FROM ev WHERE kind = 'dataset'
        UNION ALL
        SELECT lineage, branch, node, 'checkpoint', payload->>'name', NULL, payload->>'uri',
               payload->>'content_hash', TRY_CAST(payload->>'bytes' AS BIGINT), NULL,
               TRY_CAST(payload->>'step' AS BIGINT), actor_kind, actor, seq, event_id, occurred_at
        FROM ev WHERE kind = 'checkpoint'
        UNION ALL
        SELECT lineage, branch, node, 'diff', NULL, NULL, NULL, payload->>'diff_object', NULL, NULL, NULL,
               actor_kind, actor, seq, event_id, occurred_at
        FROM ev WHERE kind = 'code_diff' AND payload->>'diff_object' IS NOT NULL
        UNION ALL
        SELECT lineage, branch, node, 'snapshot', NULL, NULL, NULL, payload->>'snapshot_object', NULL, NULL,
               NULL, actor_kind, actor, seq, event_id, occurred_at
        FROM ev WHERE kind = 'code_diff' AND payload->>'snapshot_object' IS NOT NULL
    )
    SELECT * FROM a
    """,
    # -- nodes -------------------------------------------------------------------------
    """CREATE MACRO nodes_at(max_seq) AS TABLE
    WITH d AS (SELECT * FROM node_defs_at(max_seq)),
    e AS MATERIALIZED (SELECT * FROM edges_at(max_seq)),
    g AS (SELECT * FROM generations_at(max_seq)),
    ev AS (SELECT * FROM node_events_at(max_seq)),
    sc AS (SELECT * FROM scores_at(max_seq)),
    known AS (SELECT lineage, child AS node, list(parent ORDER BY position) AS known FROM e GROUP BY ALL),
    kids AS (SELECT lineage, parent AS node, count(*) AS children FROM e GROUP BY ALL),
    activity AS (
        SELECT lineage, node, count(*) AS events, max(seq) AS last_seq,
               bool_or(kind = 'selection' AND payload->>'purpose' IN ('best', 'promote')) AS promoted,
               count(*) FILTER (WHERE kind = 'selection') AS times_selected,
               arg_max(payload->>'verdict', seq) FILTER (WHERE kind = 'review' AND payload->>'verdict' <> 'comment') AS last_verdict,
               count(*) FILTER (WHERE kind = 'run' AND payload->>'status' = 'ok') AS ok_runs,
               count(*) FILTER (WHERE kind = 'run' AND payload->>'status' IN ('failed', 'timeout', 'crashed')) AS bad_runs
        FROM ev GROUP BY lineage, node
    ),
    latest AS (
        SELECT lineage, node, map(list(metric_key ORDER BY metric_key), list(value ORDER BY metric_key)) AS scores
        FROM sc WHERE is_latest GROUP BY lineage, node
    ),
    per_key AS (
        SELECT lineage, node, metric_key,
               CASE WHEN arg_max(higher_is_better, seq) THEN max(value) ELSE min(value) END AS best
        FROM sc GROUP BY lineage, node, metric_key
    ),
    best AS (
        SELECT lineage, node, map(list(metric_key ORDER BY metric_key), list(best ORDER BY metric_key)) AS best_scores
        FROM per_key GROUP BY lineage, node
    ),
    direction AS (
        SELECT lineage, metric_key, arg_max(higher_is_better, seq) AS hib
        FROM sc WHERE split_kind = 'public' GROUP BY lineage, metric_key
    ),
    -- Champions are per branch: a better score on a fork must not unseat main's best.
    leader AS (
        SELECT s.lineage, s.branch, s.metric_key,
               CASE WHEN d.hib THEN max(s.value) ELSE min(s.value) END AS top
        FROM sc s JOIN direction d USING (lineage, metric_key)
        WHERE s.is_latest AND s.split_kind = 'public' GROUP BY s.lineage, s.branch, s.metric_key, d.hib
    ),
    best_for AS (
        SELECT s.lineage, s.node, list(DISTINCT s.metric_key ORDER BY s.metric_key) AS best_for
        FROM sc s JOIN leader l
          ON l.lineage = s.lineage AND l.branch = s.branch AND l.metric_key = s.metric_key AND s.value = l.top
        WHERE s.is_latest AND s.split_kind = 'public' GROUP BY s.lineage, s.node
    )
    SELECT d.lineage, d.branch, d.node, d.label, g.generation, d.parents,
           list_filter(d.parents, lambda p: NOT list_contains(coalesce(k.known, []::VARCHAR[]), p)) AS missing_parents,
           len(d.parents) > len(coalesce(k.known, []::VARCHAR[])) AS missing_parent,
           coalesce(c.children, 0) AS children,
           CASE WHEN a.promoted THEN 'accepted'
                WHEN a.last_verdict = 'reject' THEN 'rejected'
                WHEN d.declared_status IS NOT NULL THEN d.declared_status
                WHEN a.bad_runs > 0 AND a.ok_runs = 0 THEN 'failed'
                ELSE 'candidate' END AS status,
           coalesce(a.promoted, false) AS promoted, coalesce(a.times_selected, 0) AS times_selected,
           coalesce(l.scores, map([]::VARCHAR[], []::DOUBLE[])) AS scores,
           coalesce(b.best_scores, map([]::VARCHAR[], []::DOUBLE[])) AS best_scores,
           coalesce(f.best_for, []::VARCHAR[]) AS best_for,
           f.best_for IS NOT NULL AS is_best,
           coalesce(a.events, 0) AS events,
           d.created_at, d.created_by, d.created_seq, d.created_event, a.last_seq
    FROM d
    LEFT JOIN g USING (lineage, node)
    LEFT JOIN known k USING (lineage, node)
    LEFT JOIN kids c USING (lineage, node)
    LEFT JOIN activity a USING (lineage, node)
    LEFT JOIN latest l USING (lineage, node)
    LEFT JOIN best b USING (lineage, node)
    LEFT JOIN best_for f USING (lineage, node)
    """,
    # -- involvement ---------------------------------------------------------------------
    f"""CREATE MACRO involvement_at(max_seq) AS TABLE
    WITH RECURSIVE
    d AS MATERIALIZED (SELECT lineage, node, branch, label FROM node_defs_at(max_seq)),
    g AS (SELECT * FROM generations_at(max_seq)),
    e AS MATERIALIZED (SELECT lineage, parent, child FROM edges_at(max_seq)),
    ev AS (
        -- A merge's diff counts no lines: they are the merged commits' own, counted there.
        SELECT *, CASE WHEN kind = 'code_diff' AND coalesce(payload->>'merge', 'false') = 'true' THEN 0
                       WHEN kind = 'code_diff'
                       THEN coalesce(TRY_CAST(payload->>'lines_added' AS BIGINT), 0)
                          + coalesce(TRY_CAST(payload->>'lines_removed' AS BIGINT), 0) END AS lines
        FROM node_events_at(max_seq)
    ),
    agg AS (
        SELECT lineage, node,
               count(*) AS events,
               count(*) FILTER (WHERE actor_kind = 'human') AS human_events,
               count(*) FILTER (WHERE actor_kind = 'ai') AS ai_events,
               count(*) FILTER (WHERE actor_kind = 'system') AS system_events,
               count(*) FILTER (WHERE kind = 'code_diff') AS diffs,
               count(*) FILTER (WHERE kind = 'code_diff' AND actor_kind = 'human') AS human_diffs,
               coalesce(sum(lines), 0)::BIGINT AS diff_lines,
               coalesce(sum(lines) FILTER (WHERE actor_kind = 'human'), 0)::BIGINT AS human_lines,
               coalesce(sum(lines) FILTER (WHERE actor_kind = 'ai'), 0)::BIGINT AS ai_lines,
               coalesce(sum(lines) FILTER (WHERE actor_kind = 'system'), 0)::BIGINT AS system_lines,
               count(*) FILTER (WHERE kind IN ('proposal', 'review', 'selection')) AS decisions,
               count(*) FILTER (WHERE kind IN ('proposal', 'review', 'selection') AND actor_kind = 'human') AS human_decisions,
               count(*) FILTER (WHERE kind IN ('proposal', 'review', 'selection') AND actor_kind = 'ai') AS ai_decisions,
               count(*) FILTER (WHERE kind IN ('proposal', 'review', 'selection') AND actor_kind = 'system') AS system_decisions,
               -- human work beyond oversight (reviewing, selecting, annotating, registering the node)
               count(*) FILTER (WHERE actor_kind = 'human'
                                AND kind NOT IN ('review', 'selection', 'annotation', 'node_created')) AS human_hands_on,
               {", ".join(_performer(s) for s in STAGES)}
        FROM ev GROUP BY lineage, node
    ),
    -- the events that produced the node: its diffs, or, with none, its proposals and creation
    producing AS (
        SELECT ev.lineage, ev.node, ev.actor_node
        FROM ev JOIN agg USING (lineage, node)
        WHERE ev.actor_kind = 'ai' AND ev.actor_node IS NOT NULL
          AND ((agg.diffs > 0 AND ev.kind = 'code_diff')
               OR (agg.diffs = 0 AND ev.kind IN ('proposal', 'node_created')))
    ),
    producers AS (
        SELECT lineage, node, list(DISTINCT actor_node ORDER BY actor_node) AS producer_nodes
        FROM producing GROUP BY lineage, node
    ),
    candidates AS MATERIALIZED (SELECT DISTINCT lineage, node, actor_node AS target FROM producing WHERE actor_node <> node),
    {_walk_up("up", "candidates")},
    self_built AS (SELECT DISTINCT lineage, node FROM up WHERE anc = target),
    base AS (
        SELECT d.lineage, d.branch, d.node, d.label, g.generation, agg.*  EXCLUDE (lineage, node),
               CASE WHEN agg.human_events = 0 AND agg.ai_events = 0 THEN NULL
                    WHEN agg.human_events = 0 THEN 3
                    WHEN agg.ai_events = 0 THEN 0
                    WHEN coalesce(agg.human_lines / nullif(agg.diff_lines, 0),
                                  agg.human_diffs / nullif(agg.diffs, 0), 0) >= 0.5 THEN 0
                    WHEN agg.human_hands_on = 0 THEN 2
                    ELSE 1 END::TINYINT AS autonomy_level,
               sb.node IS NOT NULL AS self_built,
               coalesce(p.producer_nodes, []::VARCHAR[]) AS producer_nodes
        FROM d JOIN agg USING (lineage, node)
        LEFT JOIN g USING (lineage, node)
        LEFT JOIN self_built sb USING (lineage, node)
        LEFT JOIN producers p USING (lineage, node)
    ),
    chain AS MATERIALIZED (SELECT lineage, node FROM base WHERE self_built AND autonomy_level = 3),
    -- the longest run of consecutive self-built level-3 nodes ending at each node
    links AS MATERIALIZED (
        SELECT e.lineage, e.parent, e.child FROM e
        SEMI JOIN chain p ON p.lineage = e.lineage AND p.node = e.parent
        SEMI JOIN chain c ON c.lineage = e.lineage AND c.node = e.child
    ),
    runs(lineage, node, depth) AS (
        -- a longest run starts at a chain node none of whose parents is in the chain
        SELECT c.lineage, c.node, 1 FROM chain c ANTI JOIN links l ON l.lineage = c.lineage AND l.child = c.node
        UNION
        SELECT l.lineage, l.child, r.depth + 1
        FROM runs r JOIN links l ON l.lineage = r.lineage AND l.parent = r.node
    ),
    depth AS (SELECT lineage, node, max(depth) AS depth FROM runs GROUP BY lineage, node)
    SELECT b.lineage, b.branch, b.node, b.label, b.generation,
           b.events, b.human_events, b.ai_events, b.system_events,
           b.human_events / b.events AS human_share,
           b.ai_events / b.events AS ai_share,
           b.system_events / b.events AS system_share,
           b.diff_lines, b.human_lines, b.ai_lines, b.system_lines,
           b.human_lines / nullif(b.diff_lines, 0) AS human_line_share,
           b.ai_lines / nullif(b.diff_lines, 0) AS ai_line_share,
           b.system_lines / nullif(b.diff_lines, 0) AS system_line_share,
           b.decisions, b.human_decisions, b.ai_decisions, b.system_decisions,
           b.human_decisions / nullif(b.decisions, 0) AS human_decision_share,
           b.ai_decisions / nullif(b.decisions, 0) AS ai_decision_share,
           b.system_decisions / nullif(b.decisions, 0) AS system_decision_share,
           {", ".join(f"b.{s}" for s in STAGES)},
           b.autonomy_level, b.self_built, b.producer_nodes,
           coalesce(dp.depth, 0)::INTEGER AS recursion_depth
    FROM base b LEFT JOIN depth dp USING (lineage, node)
    """,
    f"""CREATE MACRO involvement_by_generation_at(max_seq) AS TABLE
    SELECT lineage, generation, count(*) AS nodes, {_ROLLUP}
    FROM involvement_at(max_seq)
    GROUP BY lineage, generation
    """,
    f"""CREATE MACRO involvement_by_lineage_at(max_seq) AS TABLE
    SELECT lineage, count(*) AS nodes, count(DISTINCT generation) AS generations, {_ROLLUP},
           regr_slope(human_share, generation) AS human_share_slope
    FROM involvement_at(max_seq)
    GROUP BY lineage
    """,
    # -- oversight signals ---------------------------------------------------------------
    f"""CREATE MACRO signals_at(max_seq) AS TABLE
    WITH RECURSIVE
    d AS MATERIALIZED (SELECT lineage, node, branch, len(parents) > 0 AS has_parents FROM node_defs_at(max_seq)),
    e AS MATERIALIZED (SELECT lineage, parent, child FROM edges_at(max_seq)),
    ev AS (SELECT * FROM node_events_at(max_seq)),
    sc AS (SELECT * FROM scores_at(max_seq)),
    non_roots AS (SELECT lineage, node FROM d WHERE has_parents),
    diff_stats AS (
        SELECT lineage, node,
               sum(coalesce(TRY_CAST(payload->>'lines_added' AS BIGINT), 0)
                   + coalesce(TRY_CAST(payload->>'lines_removed' AS BIGINT), 0))::BIGINT AS lines,
               list(event_id ORDER BY seq) AS diff_events
        FROM ev WHERE kind = 'code_diff' GROUP BY lineage, node
    ),

    -- self_evaluation: a score recorded by an actor who built the node (its diffs, or
    -- with no diff its proposals), or by the node itself acting as an AI
    builders AS (
        SELECT ev.lineage, ev.node, ev.actor, ev.actor_kind, ev.seq, ev.event_id
        FROM ev LEFT JOIN diff_stats ds USING (lineage, node)
        WHERE ev.actor_kind <> 'system'
          AND ((ds.node IS NOT NULL AND ev.kind = 'code_diff') OR (ds.node IS NULL AND ev.kind = 'proposal'))
    ),
    se_scores AS (
        SELECT s.lineage, s.node, s.actor, s.actor_kind, s.seq, s.event_id FROM sc s
        WHERE s.actor_kind <> 'system'
          AND (s.actor_node = s.node
               OR EXISTS (SELECT 1 FROM builders b WHERE b.lineage = s.lineage AND b.node = s.node AND b.actor = s.actor))
    ),
    se_evidence AS (
        SELECT lineage, node, actor, actor_kind, seq, event_id FROM se_scores
        UNION
        SELECT b.lineage, b.node, b.actor, b.actor_kind, b.seq, b.event_id FROM builders b
        SEMI JOIN se_scores s ON s.lineage = b.lineage AND s.node = b.node AND s.actor = b.actor
    ),
    self_evaluation AS (
        SELECT lineage, node, 'self_evaluation' AS signal, NULL::VARCHAR AS metric,
               CASE WHEN bool_or(actor_kind = 'ai') THEN 'warning' ELSE 'info' END AS severity,
               'scored by the actor that built it: ' || string_agg(DISTINCT actor, ', ' ORDER BY actor) AS detail,
               list(event_id ORDER BY seq) AS evidence, max(seq) AS seq
        FROM se_evidence GROUP BY lineage, node
    ),

    -- evaluator_touched: a diff edits a path matching one of the evaluator globs (a root,
    -- a node without parents, establishes its evaluator rather than touching one)
    globs AS (SELECT unnest(setting_list('evaluator_globs')) AS glob),
    diff_paths AS (
        SELECT ev.lineage, ev.node, ev.seq, ev.event_id, ev.actor_kind,
               unnest(list_distinct(list_filter(flatten([
                   coalesce(CAST(json_extract_string(payload, '$.paths[*]') AS VARCHAR[]), []::VARCHAR[]),
                   coalesce(CAST(json_extract_string(payload, '$.files[*].path') AS VARCHAR[]), []::VARCHAR[]),
                   coalesce(CAST(json_extract_string(payload, '$.files[*].old_path') AS VARCHAR[]), []::VARCHAR[])
               ]), lambda p: p IS NOT NULL))) AS path
        FROM ev JOIN non_roots r USING (lineage, node)
        WHERE ev.kind = 'code_diff'
    ),
    touching AS (
        SELECT lineage, node, seq, event_id, actor_kind, list(DISTINCT path ORDER BY path) AS paths
        FROM diff_paths p SEMI JOIN globs g ON lower(p.path) GLOB lower(g.glob)
        GROUP BY lineage, node, seq, event_id, actor_kind
    ),
    evaluator_touched AS (
        SELECT lineage, node, 'evaluator_touched' AS signal, NULL::VARCHAR AS metric,
               CASE WHEN bool_or(actor_kind = 'ai') THEN 'critical' ELSE 'warning' END AS severity,
               'diff edits evaluation or test code: '
                   || array_to_string(list_sort(list_distinct(flatten(list(paths)))), ', ') AS detail,
               list(event_id ORDER BY seq) AS evidence, max(seq) AS seq
        FROM touching GROUP BY lineage, node
    ),

    -- contamination: a train dataset with the content hash of an eval or held-out dataset
    -- of the same node or of an ancestor (or the reverse); found at the later node
    ds AS (
        SELECT lineage, node, seq, event_id, payload->>'role' AS role, payload->>'name' AS name,
               payload->>'content_hash' AS content_hash
        FROM ev WHERE kind = 'dataset' AND payload->>'content_hash' IS NOT NULL
    ),
    pairs AS (
        SELECT t.lineage, t.node AS train_node, v.node AS eval_node, v.role AS eval_role,
               t.name AS train_name, v.name AS eval_name,
               t.event_id AS train_event, t.seq AS train_seq, v.event_id AS eval_event, v.seq AS eval_seq
        FROM ds t JOIN ds v ON v.lineage = t.lineage AND v.content_hash = t.content_hash
        WHERE t.role = 'train' AND v.role IN ('eval', 'heldout')
    ),
    related AS MATERIALIZED (
        SELECT DISTINCT lineage, train_node AS node, eval_node AS target FROM pairs WHERE train_node <> eval_node
        UNION
        SELECT DISTINCT lineage, eval_node, train_node FROM pairs WHERE train_node <> eval_node
    ),
    {_walk_up("walk", "related")},
    ancestry AS (SELECT DISTINCT lineage, node, target FROM walk WHERE anc = target),
    found AS (
        SELECT p.*, p.train_node AS at_node FROM pairs p WHERE p.train_node = p.eval_node
        UNION ALL
        SELECT p.*, p.eval_node FROM pairs p
        SEMI JOIN ancestry a ON a.lineage = p.lineage AND a.node = p.eval_node AND a.target = p.train_node
        UNION ALL
        SELECT p.*, p.train_node FROM pairs p
        SEMI JOIN ancestry a ON a.lineage = p.lineage AND a.node = p.train_node AND a.target = p.eval_node
    ),
    found_events AS (
        SELECT lineage, at_node AS node, train_event AS event_id, train_seq AS seq FROM found
        UNION
        SELECT lineage, at_node, eval_event, eval_seq FROM found
    ),
    contamination AS (
        SELECT f.lineage, f.node, 'contamination' AS signal, NULL::VARCHAR AS metric,
               CASE WHEN bool_or(f.eval_role = 'heldout') THEN 'critical' ELSE 'warning' END AS severity,
               'train data shares content with ' || string_agg(DISTINCT f.eval_role || ' data', ' and ' ORDER BY f.eval_role || ' data')
                   || ': ' || string_agg(DISTINCT f.train_name || ' = ' || f.eval_name, ', ' ORDER BY f.train_name || ' = ' || f.eval_name) AS detail,
               (SELECT list(x.event_id ORDER BY x.seq) FROM found_events x
                WHERE x.lineage = f.lineage AND x.node = f.node) AS evidence,
               greatest(max(f.train_seq), max(f.eval_seq)) AS seq
        FROM (SELECT *, at_node AS node FROM found) f GROUP BY f.lineage, f.node
    ),

    -- unreviewed_promotion: promoted (selection as best or promote) by an AI or system,
    -- and no human has approved the node: the latest human verdict is missing or 'reject'
    human_verdict AS (
        SELECT lineage, node, arg_max(payload->>'verdict', seq) AS verdict, arg_max(event_id, seq) AS event_id,
               max(seq) AS seq
        FROM ev WHERE kind = 'review' AND actor_kind = 'human' AND payload->>'verdict' <> 'comment'
        GROUP BY lineage, node
    ),
    promotions AS (
        SELECT lineage, node, list(event_id ORDER BY seq) AS events, max(seq) AS seq,
               string_agg(DISTINCT actor, ', ' ORDER BY actor) AS actors
        FROM ev WHERE kind = 'selection' AND actor_kind <> 'human' AND payload->>'purpose' IN ('best', 'promote')
        GROUP BY lineage, node
    ),
    unreviewed_promotion AS (
        SELECT p.lineage, p.node, 'unreviewed_promotion' AS signal, NULL::VARCHAR AS metric,
               CASE WHEN h.verdict = 'reject' THEN 'critical' ELSE 'warning' END AS severity,
               CASE WHEN h.verdict = 'reject' THEN 'promoted by ' || p.actors || ' although a human rejected it'
                    ELSE 'promoted by ' || p.actors || ' with no human review' END AS detail,
               CASE WHEN h.verdict = 'reject' THEN list_append(p.events, h.event_id) ELSE p.events END AS evidence,
               greatest(p.seq, coalesce(h.seq, 0)) AS seq
        FROM promotions p LEFT JOIN human_verdict h USING (lineage, node)
        WHERE h.verdict IS NULL OR h.verdict = 'reject'
    ),

    -- versus the parent: the latest public and held-out value of each metric per node,
    -- compared with the parent that has the best public value (several parents: the best)
    public AS (
        SELECT lineage, node, metric, arg_max(value, seq) AS value, arg_max(higher_is_better, seq) AS hib,
               arg_max(event_id, seq) AS event_id, max(seq) AS seq
        FROM sc WHERE split_kind = 'public' GROUP BY lineage, node, metric
    ),
    heldout AS (
        SELECT lineage, node, metric, arg_max(value, seq) AS value, arg_max(higher_is_better, seq) AS hib,
               arg_max(event_id, seq) AS event_id, max(seq) AS seq
        FROM sc WHERE split_kind = 'heldout' GROUP BY lineage, node, metric
    ),
    reference AS (
        SELECT e.lineage, e.child AS node, p.metric, e.parent
        FROM e JOIN public p ON p.lineage = e.lineage AND p.node = e.parent
        QUALIFY row_number() OVER (PARTITION BY e.lineage, e.child, p.metric
                                   ORDER BY CASE WHEN p.hib THEN p.value ELSE -p.value END DESC, e.parent) = 1
    ),
    versus AS (
        SELECT r.lineage, r.node, r.metric, r.parent, c.hib,
               c.value AS child_value, p.value AS parent_value,
               (c.value - p.value) * CASE WHEN c.hib THEN 1 ELSE -1 END AS gain,
               c.event_id AS child_event, c.seq AS child_seq, p.event_id AS parent_event, p.seq AS parent_seq
        FROM reference r
        JOIN public c ON c.lineage = r.lineage AND c.node = r.node AND c.metric = r.metric
        JOIN public p ON p.lineage = r.lineage AND p.node = r.parent AND p.metric = r.metric
    ),
    heldout_gap AS (
        SELECT v.lineage, v.node, 'heldout_gap' AS signal, v.metric, 'critical' AS severity,
               printf('%s: public %.4g -> %.4g, held-out %.4g -> %.4g versus parent %s',
                      v.metric, v.parent_value, v.child_value, hp.value, hc.value, v.parent) AS detail,
               [v.parent_event, hp.event_id, v.child_event, hc.event_id] AS evidence,
               greatest(v.child_seq, hc.seq) AS seq
        FROM versus v
        JOIN heldout hc ON hc.lineage = v.lineage AND hc.node = v.node AND hc.metric = v.metric
        JOIN heldout hp ON hp.lineage = v.lineage AND hp.node = v.parent AND hp.metric = v.metric
        WHERE v.gain > setting_double('heldout_gap_min_rise')
          AND (hp.value - hc.value) * CASE WHEN hc.hib THEN 1 ELSE -1 END > setting_double('heldout_gap_min_drop')
    ),
    suspicious_jump AS (
        SELECT v.lineage, v.node, 'suspicious_jump' AS signal, v.metric, 'warning' AS severity,
               printf('%s: %.4g -> %.4g versus parent %s from a diff of %d lines',
                      v.metric, v.parent_value, v.child_value, v.parent, x.lines) AS detail,
               list_concat([v.parent_event], x.diff_events, [v.child_event]) AS evidence,
               v.child_seq AS seq
        FROM versus v JOIN diff_stats x USING (lineage, node)
        WHERE v.gain > 0
          AND v.gain >= setting_double('jump_min_absolute_gain')
          AND (v.parent_value = 0 OR v.gain / abs(v.parent_value) >= setting_double('jump_min_relative_gain'))
          AND x.lines <= setting_double('jump_max_diff_lines')
    ),
    every AS (
        SELECT * FROM self_evaluation
        UNION ALL SELECT * FROM evaluator_touched
        UNION ALL SELECT * FROM contamination
        UNION ALL SELECT * FROM unreviewed_promotion
        UNION ALL SELECT * FROM heldout_gap
        UNION ALL SELECT * FROM suspicious_jump
    )
    SELECT x.lineage, d.branch, x.node, x.signal, x.severity, x.metric, x.detail, x.evidence, x.seq
    FROM every x JOIN d USING (lineage, node)
    """,
    # -- navigation ----------------------------------------------------------------------
    f"""CREATE MACRO ancestors(node_id, lineage_name := NULL, max_seq := {NOW}) AS TABLE
    WITH RECURSIVE
    e AS MATERIALIZED (SELECT lineage, parent, child FROM edges_at(max_seq)
          WHERE lineage_name IS NULL OR lineage = lineage_name),
    a(lineage, node, distance) AS (
        SELECT lineage, parent, 1 FROM e WHERE child = node_id
        UNION
        SELECT e.lineage, e.parent, a.distance + 1
        FROM a JOIN e ON e.lineage = a.lineage AND e.child = a.node
    )
    SELECT lineage, node, min(distance)::INTEGER AS distance FROM a GROUP BY lineage, node
    """,
    f"""CREATE MACRO descendants(node_id, lineage_name := NULL, max_seq := {NOW}) AS TABLE
    WITH RECURSIVE
    e AS MATERIALIZED (SELECT lineage, parent, child FROM edges_at(max_seq)
          WHERE lineage_name IS NULL OR lineage = lineage_name),
    a(lineage, node, distance) AS (
        SELECT lineage, child, 1 FROM e WHERE parent = node_id
        UNION
        SELECT e.lineage, e.child, a.distance + 1
        FROM a JOIN e ON e.lineage = a.lineage AND e.parent = a.node
    )
    SELECT lineage, node, min(distance)::INTEGER AS distance FROM a GROUP BY lineage, node
    """,
    # The shortest way from a to b through the genealogy: up from a to their nearest
    # common ancestor (a itself when a is an ancestor of b), then down to b.
    f"""CREATE MACRO lineage_path(node_a, node_b, lineage_name := NULL, max_seq := {NOW}) AS TABLE
    WITH RECURSIVE
    d AS MATERIALIZED (SELECT lineage, node FROM node_defs_at(max_seq)
          WHERE lineage_name IS NULL OR lineage = lineage_name),
    e AS MATERIALIZED (SELECT lineage, parent, child FROM edges_at(max_seq)
          WHERE lineage_name IS NULL OR lineage = lineage_name),
    up_a(lineage, node, path) USING KEY (lineage, node) AS (
        SELECT lineage, node, [node] FROM d WHERE node = node_a
        UNION
        SELECT e.lineage, e.parent, min(list_append(u.path, e.parent))
        FROM up_a u JOIN e ON e.lineage = u.lineage AND e.child = u.node
        ANTI JOIN recurring.up_a r ON r.lineage = e.lineage AND r.node = e.parent
        GROUP BY e.lineage, e.parent
    ),
    up_b(lineage, node, path) USING KEY (lineage, node) AS (
        SELECT lineage, node, [node] FROM d WHERE node = node_b
        UNION
        SELECT e.lineage, e.parent, min(list_append(u.path, e.parent))
        FROM up_b u JOIN e ON e.lineage = u.lineage AND e.child = u.node
        ANTI JOIN recurring.up_b r ON r.lineage = e.lineage AND r.node = e.parent
        GROUP BY e.lineage, e.parent
    ),
    meet AS (
        SELECT a.lineage, a.path AS path_a, b.path AS path_b
        FROM up_a a JOIN up_b b ON a.lineage = b.lineage AND a.node = b.node
        ORDER BY len(a.path) + len(b.path), a.path, b.path
        LIMIT 1
    ),
    full_path AS (
        SELECT lineage, len(path_a) AS apex,
               list_concat(path_a, list_reverse(path_b)[2:]) AS nodes
        FROM meet
    ),
    numbered AS (SELECT lineage, apex, nodes, unnest(range(1, len(nodes) + 1)) AS i FROM full_path)
    SELECT (i - 1)::INTEGER AS step, lineage, nodes[i] AS node,
           CASE WHEN i = 1 THEN 'start' WHEN i <= apex THEN 'up' ELSE 'down' END AS direction
    FROM numbered
    ORDER BY step
    """,
    # The champion's line: the node with the best latest value of a metric (on a public
    # split, or on split_name), then back to a root, always through the best-scoring parent.
    f"""CREATE MACRO best_path(lineage_name, metric_name, split_name := NULL, max_seq := {NOW}) AS TABLE
    WITH RECURSIVE
    v AS MATERIALIZED (
        SELECT node, arg_max(value, seq) AS value, arg_max(higher_is_better, seq) AS hib, max(seq) AS seq
        FROM scores_at(max_seq)
        WHERE lineage = lineage_name AND metric = metric_name AND is_latest
          AND CASE WHEN split_name IS NULL THEN split_kind = 'public' ELSE split = split_name END
        GROUP BY node
    ),
    champion AS (
        SELECT node FROM v ORDER BY CASE WHEN hib THEN value ELSE -value END DESC, seq LIMIT 1
    ),
    e AS MATERIALIZED (SELECT parent, child, position FROM edges_at(max_seq) WHERE lineage = lineage_name),
    best_parent AS MATERIALIZED (
        SELECT e.child, e.parent FROM e LEFT JOIN v ON v.node = e.parent
        QUALIFY row_number() OVER (PARTITION BY e.child
                                   ORDER BY CASE WHEN v.hib THEN v.value ELSE -v.value END DESC NULLS LAST,
                                            e.position) = 1
    ),
    p(node, distance) AS (
        SELECT node, 0 FROM champion
        UNION ALL
        SELECT b.parent, p.distance + 1 FROM p JOIN best_parent b ON b.child = p.node
    )
    SELECT (max(p.distance) OVER () - p.distance)::INTEGER AS step, lineage_name AS lineage, p.node,
           d.branch, g.generation, d.label, v.value
    FROM p
    JOIN node_defs_at(max_seq) d ON d.lineage = lineage_name AND d.node = p.node
    LEFT JOIN generations_at(max_seq) g ON g.lineage = lineage_name AND g.node = p.node
    LEFT JOIN v ON v.node = p.node
    ORDER BY step
    """,
    # -- the views: every projection as of now --------------------------------------------
    *(
        f"CREATE VIEW {name} AS SELECT * FROM {name}_at({NOW})"
        for name in (
            "effective_events", "node_events", "edges", "generations", "scores", "artifacts",
            "nodes", "involvement", "involvement_by_generation", "involvement_by_lineage", "signals",
        )
    ),
]
