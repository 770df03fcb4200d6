"""Event validation: every kind has a typed payload, and every refusal names the field."""

from __future__ import annotations

import json

import orjson
import pytest

from schemas import KINDS, VERSION, Draft, SchemaError, prepare, validate_payload
from schemas.actor import ActorKind, parse_actor
from schemas.jsonschema import write_schemas
from schemas.upcast import upcast

SHA = "ab" * 32

# One realistic payload per kind, as a loop would send it.
GOOD: dict[str, dict] = {
    "node_created": {"parents": ["n1", "n2"], "label": "crossover of n1 and n2"},
    "proposal": {"idea": "sort items by size before packing", "rationale": "first-fit decreasing"},
    "code_diff": {
        "diff_object": SHA, "paths": ["pack.py"], "lines_added": 3, "lines_removed": 1,
        "files": [{"path": "pack.py", "change": "modified", "lines_added": 3, "lines_removed": 1}],
        "base_tree": SHA, "result_tree": "cd" * 32,
    },
    "dataset": {"name": "bins-eval", "uri": "data/eval.jsonl", "content_hash": SHA, "rows": 100, "bytes": 2048, "role": "eval"},
    "run": {
        "command": ["python", "eval.py"], "seed": 7, "environment": {"PYTHONHASHSEED": "0"},
        "status": "ok", "duration_s": 1.5, "cost": {"tokens": 1200, "dollars": 0.02, "gpu_hours": 0.0},
    },
    "checkpoint": {"uri": "ckpt/step-100.pt", "content_hash": SHA, "bytes": 4096, "step": 100},
    "score": {"metric": "fill", "value": 0.93, "split": "eval", "higher_is_better": True},
    "review": {"verdict": "approve", "text": "looks right"},
    "selection": {"node": "n7", "purpose": "parent", "reason": "best fill so far"},
    "annotation": {"text": "sorting helped more than expected", "topic": "lesson"},
    "retraction": {"event_id": "0190f7a2-6b1c-7c3e-8e1f-2a3b4c5d6e7f", "reason": "evaluated on the wrong split"},
    "branch_created": {"name": "explore", "from_node": "n7", "from_branch": "main"},
    "replay": {
        "node": "n7", "outcome": "reproduced",
        "metrics": [{"metric": "fill", "split": "public", "recorded": 0.93, "reproduced": 0.93, "delta": 0.0, "tolerance": 1e-9}],
    },
}


def draft(kind: str = "score", payload: dict | None = None, **kw) -> Draft:
    fields = {"lineage": "packing", "kind": kind, "actor": "ai:gpt-5", "payload": GOOD[kind] if payload is None else payload}
    fields.update(kw)
    return Draft(**fields)


def refusal(d: Draft) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        prepare(d)
    return info.value


# -- every kind --------------------------------------------------------------------


def test_every_kind_in_the_design_has_a_model():
    assert set(KINDS) == set(GOOD)


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_a_good_payload_of_every_kind_validates(kind):
    p = prepare(draft(kind))
    stored = json.loads(p.payload_json)
    for key, value in GOOD[kind].items():
        assert stored[key] == value
    assert p.schema_version == VERSION[kind]
    assert p.kind == kind


def test_canonical_payload_is_sorted_compact_json():
    p = prepare(draft("score", {"value": 0.5, "metric": "fill"}))
    assert p.payload_json == '{"higher_is_better":true,"metric":"fill","split":"public","value":0.5}'


# -- wrong types and missing fields --------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload", "field", "expected"),
    [
        ("score", {"metric": "fill", "value": "0.93"}, "payload.value", "number"),
        ("score", {"metric": "fill", "value": True}, "payload.value", "number"),
        ("score", {"metric": 3, "value": 0.5}, "payload.metric", "string"),
        ("run", {"command": ["x"], "status": "ok", "seed": "7"}, "payload.seed", "integer"),
        ("run", {"command": ["x"], "status": "maybe"}, "payload.status", "'ok'"),
        ("dataset", {"name": "d", "role": "test"}, "payload.role", "'train'"),
        ("checkpoint", {"uri": "c.pt", "step": -1}, "payload.step", "greater than or equal to 0"),
        ("code_diff", {"diff_object": "not-a-hash"}, "payload.diff_object", "pattern"),
        ("node_created", {"parents": "n1"}, "payload.parents", "list"),
        ("review", {"verdict": "maybe"}, "payload.verdict", "'approve'"),
    ],
)
def test_a_wrong_type_is_refused_naming_the_field_and_what_was_expected(kind, payload, field, expected):
    err = refusal(draft(kind, payload))
    assert err.field == field
    assert field in str(err)
    assert expected in str(err)


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("score", {"value": 0.5}, "payload.metric"),
        ("proposal", {}, "payload.idea"),
        ("run", {"command": "make"}, "payload.status"),
        ("dataset", {"name": "d"}, "payload.role"),
        ("selection", {}, "payload.node"),
    ],
)
def test_a_missing_required_field_is_named(kind, payload, field):
    err = refusal(draft(kind, payload))
    assert err.field == field
    assert "required" in str(err).lower()


def test_an_unknown_kind_is_refused_listing_the_known_kinds():
    err = refusal(Draft(lineage="packing", kind="benchmark", actor="ai:gpt-5", payload={}))
    assert err.field == "kind"
    assert "'benchmark'" in str(err)
    for kind in KINDS:
        assert kind in str(err)


def test_a_payload_that_is_not_an_object_is_refused():
    err = refusal(draft("score", payload=[1, 2]))  # type: ignore[arg-type]
    assert err.field == "payload"
    assert "object" in str(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lineage", ""), ("lineage", None), ("node", "a\nb"), ("branch", "x\x1fy"), ("actor_node", 5),
     ("node", "ends in a newline\n")],
)
def test_a_bad_name_is_refused_naming_it(field, value):
    assert refusal(draft("score", **{field: value})).field == field


@pytest.mark.parametrize(("field", "value"), [("occurred_at", "yesterday"), ("caused_by", "not-a-uuid"), ("event_id", "42")])
def test_a_bad_timestamp_or_id_is_refused_naming_it(field, value):
    assert refusal(draft("score", **{field: value})).field == field


@pytest.mark.parametrize("when", [1_795_000_000_000_000_000, 1e15, -1e15])
def test_an_out_of_range_numeric_timestamp_is_refused(when):
    """Nanoseconds or milliseconds passed where seconds are expected must not be stored."""
    assert refusal(draft("score", occurred_at=when)).field == "occurred_at"


def test_numeric_timestamps_are_seconds_since_the_epoch():
    assert prepare(draft("score", occurred_at=1_700_000_000.25)).occurred_us == 1_700_000_000_250_000


# -- actors --------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["bob", "Human:x", "bot:x", "human:", "human: ", "ai:a\nb", "ai:x\n", "", None, 3])
def test_a_bad_actor_is_refused_saying_what_an_actor_looks_like(actor):
    err = refusal(draft("score", actor=actor))
    assert err.field == "actor"
    assert "human:" in str(err) or "string" in str(err)


@pytest.mark.parametrize("actor", [None, ""])
def test_a_missing_actor_is_an_error_not_a_default(actor):
    err = refusal(draft("score", actor=actor))
    assert "actor is required" in str(err)


@pytest.mark.parametrize(
    ("actor", "kind", "name"),
    [("human:alice", ActorKind.human, "alice"), ("ai:claude-opus", ActorKind.ai, "claude-opus"), ("system:ci/eval", ActorKind.system, "ci/eval")],
)
def test_the_three_actor_kinds_are_recognised(actor, kind, name):
    assert parse_actor(actor) == (kind, name)
    assert prepare(draft("score", actor=actor)).actor_kind == kind.value


def test_only_an_ai_actor_can_be_a_node_of_the_lineage():
    assert prepare(draft("score", actor="ai:gen-3", actor_node="n3")).actor_node == "n3"
    err = refusal(draft("score", actor="human:alice", actor_node="n3"))
    assert err.field == "actor_node"


# -- numbers and text JSON cannot carry -------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_in_a_declared_number(bad):
    err = refusal(draft("score", {"metric": "fill", "value": bad}))
    assert err.field == "payload.value"
    assert "finite" in str(err)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_in_nested_and_extra_fields(bad):
    err = refusal(draft("score", {"metric": "fill", "value": 0.5, "extra": {"curve": [0.1, bad]}}))
    assert err.field == "payload.extra.curve[1]"
    err = refusal(draft("run", {"command": "x", "status": "ok", "cost": {"dollars": bad}}))
    assert err.field == "payload.cost.dollars"


def test_a_lone_surrogate_is_refused_as_invalid_utf8():
    err = refusal(draft("proposal", {"idea": "try \ud800 this"}))
    assert err.field == "payload.idea"
    assert "UTF-8" in str(err)
    err = refusal(draft("annotation", {"text": "ok", "notes": {"k": ["\udfff"]}}))
    assert err.field == "payload.notes.k[0]"


def test_a_payload_over_one_megabyte_is_refused_pointing_to_the_object_store():
    err = refusal(draft("annotation", {"text": "x" * (1 << 20)}))
    assert err.field == "payload"
    assert "object store" in str(err)
    assert "MB" in str(err)
    err = refusal(draft("run", {"command": "x", "status": "ok", "log": "y" * (10 << 20)}))
    assert "10.5 MB" in str(err) and "object store" in str(err)
    # just under the limit is fine
    assert prepare(draft("annotation", {"text": "x" * ((1 << 20) - 100)}))


def test_a_value_that_is_not_json_is_refused():
    err = refusal(draft("annotation", {"text": "t", "when": object()}))
    assert err.field == "payload.when"


# -- extra fields ------------------------------------------------------------------------


def test_fields_the_schema_does_not_declare_are_kept():
    payload = {"metric": "fill", "value": 0.5, "openevolve": {"island": 3, "iteration": 41}, "note": "from import"}
    stored = orjson.loads(prepare(draft("score", payload)).payload_json)
    assert stored["openevolve"] == {"island": 3, "iteration": 41}
    assert stored["note"] == "from import"


# -- versions and upcasting ----------------------------------------------------------------


def test_score_is_at_version_two():
    assert VERSION["score"] == 2


def test_a_version_one_score_is_upcast_to_the_current_model():
    p = prepare(draft("score", {"name": "fill", "value": 0.7, "run": 3}, schema_version=1))
    assert p.schema_version == 2
    assert orjson.loads(p.payload_json) == {"metric": "fill", "value": 0.7, "split": "public", "higher_is_better": True, "run": 3}


def test_the_upcaster_keeps_an_explicit_split():
    assert upcast("score", 1, {"name": "fill", "value": 1.0, "split": "heldout"})["split"] == "heldout"


def test_a_current_version_payload_passes_unchanged():
    data, version = validate_payload("score", {"metric": "fill", "value": 0.5}, 2)
    assert version == 2 and data["metric"] == "fill"


def test_a_version_one_score_still_needs_its_value():
    err = refusal(draft("score", {"name": "fill"}, schema_version=1))
    assert err.field == "payload.value"


def test_a_future_version_is_refused_saying_to_upgrade():
    err = refusal(draft("score", schema_version=3))
    assert err.field == "schema_version"
    assert "upgrade" in str(err)


@pytest.mark.parametrize("version", [0, -1])
def test_a_version_below_one_is_refused(version):
    assert refusal(draft("score", schema_version=version)).field == "schema_version"


# -- JSON Schema export ----------------------------------------------------------------------


def inbox_line(kind: str) -> dict:
    """One line as a non-Python producer would write it into inbox/."""
    line = {
        "lineage": "packing", "branch": "main", "node": "n7", "kind": kind, "actor": "ai:gpt-5",
        "occurred_at": "2025-01-02T03:04:05Z", "event_id": "0190f7a2-6b1c-7c3e-8e1f-2a3b4c5d6e7f",
        "schema_version": VERSION[kind], "payload": GOOD[kind],
    }
    return json.loads(json.dumps(line))


def test_write_schemas_writes_one_json_schema_per_kind_and_an_index(tmp_path):
    written = write_schemas(tmp_path / "schemas")
    assert {p.name for p in written} == {f"{k}.schema.json" for k in KINDS} | {"event.schema.json"}
    index = json.loads((tmp_path / "schemas" / "index.json").read_text())
    assert set(index["kinds"]) == set(KINDS)
    assert index["versions"]["score"] == 2
    for kind in KINDS:
        schema = json.loads((tmp_path / "schemas" / f"{kind}.schema.json").read_text())
        assert schema["properties"]["kind"] == {"const": kind}
        assert {"lineage", "kind", "actor", "payload"} <= set(schema["required"])
        payload = schema["properties"]["payload"]
        assert payload["type"] == "object"
        for field in GOOD[kind]:
            assert field in payload["properties"], f"{kind}.{field} missing from the JSON Schema"


def test_the_exported_json_schema_accepts_a_real_inbox_line_and_refuses_a_bad_one(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    write_schemas(tmp_path)
    for kind in KINDS:
        schema = json.loads((tmp_path / f"{kind}.schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        line = inbox_line(kind)
        validator.validate(line)
        # The same line is accepted by the Python side too.
        prepare(Draft(**line))
        assert list(validator.iter_errors(dict(line, actor="bob"))), kind
        assert list(validator.iter_errors({k: v for k, v in line.items() if k != "actor"})), kind
        assert list(validator.iter_errors(dict(line, kind="other"))), kind


def test_the_exported_json_schema_describes_what_an_inbox_line_needs(tmp_path):
    """Checked by hand, so it holds even where the jsonschema package is not installed."""
    write_schemas(tmp_path)
    schema = json.loads((tmp_path / "score.schema.json").read_text())
    line = inbox_line("score")
    assert set(line) <= set(schema["properties"]), "an inbox line has a field the schema does not allow"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"] == {"const": 2}
    payload = schema["properties"]["payload"]
    assert set(payload["required"]) == {"metric", "value"}
    assert payload["properties"]["value"]["type"] == "number"
    assert "human" in schema["properties"]["actor"]["pattern"]
    run = json.loads((tmp_path / "run.schema.json").read_text())
    assert set(run["properties"]["payload"]["properties"]["status"]["enum"]) == {"ok", "failed", "timeout", "crashed", "running"}


@pytest.mark.parametrize(("kind", "payload", "field"), [
    ("run", {"command": "x", "status": "ok", "cost": {"tokens": "5"}}, "payload.cost.tokens"),
    ("code_diff", {"files": [{"path": "a.py", "lines_added": "3"}]}, "payload.files.0.lines_added"),
    ("replay", {"node": "n", "outcome": "drifted", "metrics": [{"metric": "acc", "recorded": "0.5"}]}, "payload.metrics.0.recorded"),
])
def test_nested_fields_are_as_strict_as_top_level_ones(kind, payload, field):
    """A string where a number belongs is refused at any depth, never coerced."""
    assert refusal(draft(kind, payload=payload)).field == field
