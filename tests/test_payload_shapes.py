"""Column-wise canonical payloads (``lineage.payload_shapes``) against ``prepare``.

Whatever the column-wise path decides must be exactly the JSON ``prepare`` stores for that
payload, and what it cannot decide must be left to Python, never dropped.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ingest import _slow, payloads

from lineage.payload_shapes import canonical_payloads, place
from schemas.payloads import MODELS


def decide(kind: str | None, texts: list[str | None]) -> dict[int, str | None]:
    """Row -> canonical text (None: left to Python), checking every asked row is answered once."""
    kinds = pa.array([kind] * len(texts), pa.string())
    rows, made, left = canonical_payloads(kinds, pa.array(texts, pa.string()).cast(pa.binary()))
    answered = rows.to_pylist() + left.to_pylist()
    assert sorted(answered) == (list(range(len(texts))) if kind else []), "each asked row once"
    out = dict.fromkeys(left.to_pylist())
    out.update(zip(rows.to_pylist(), made.to_pylist(), strict=True))
    return out


def styles(p: dict) -> list[str]:
    """The same payload as different producers write it."""
    return [
        json.dumps(p, separators=(",", ":"), ensure_ascii=False),
        json.dumps(p),  # spaces, and \\u escapes for anything beyond ASCII
        json.dumps(dict(reversed(list(p.items()))), ensure_ascii=False, indent=1),
    ]


@pytest.mark.parametrize("kind", sorted(MODELS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_payload_made_canonical_column_wise_is_the_json_prepare_stores(kind, data):
    batch = data.draw(st.lists(payloads(kind), min_size=1, max_size=6))
    texts = [t for p in batch for t in styles(p)]
    for row, made in decide(kind, texts).items():
        if made is not None:
            assert made == _slow(kind, json.loads(texts[row])), texts[row]


def test_the_common_shapes_are_decided_column_wise_and_the_odd_ones_left_to_python():
    texts = [
        '{"metric": "acc", "value": 0.5, "split": "eval"}',   # 0: learned shape
        '{"metric": "acc", "value": 2, "split": "dev"}',      # 1: same shape, an integer made 2.0
        '{"metric":"f1","value":0.25,"notes":"x"}',           # 2: another shape, an extra key
        '{"metric": "", "value": 0.5, "split": "eval"}',      # 3: empty metric: refused by the model
        '{"metric": "acc", "value": -0, "split": "eval"}',    # 4: integer -0 is 0.0 to orjson
        '{"metric": "acc", "value": 1e-06, "split": "eval"}',  # 5: orjson writes 1e-6
        '{"metric": "acc", "value": 1e16, "split": "eval"}',   # 6: orjson writes 1e16
        '{"metric": "caf\\u00e9", "value": 0.5, "split": "eval"}',  # 7: an escape orjson does not write
        '{"metric": "acc", "value": 0.5, "value": 0.7, "split": "eval"}',  # 8: a key twice
        '{"metric": "acc", "value": NaN, "split": "eval"}',   # 9: not JSON
        None,                                                 # 10: no payload: {}
    ]
    got = decide("score", texts)
    assert got[0] == '{"higher_is_better":true,"metric":"acc","split":"eval","value":0.5}'
    assert got[1] == '{"higher_is_better":true,"metric":"acc","split":"dev","value":2.0}'
    assert got[2] == '{"higher_is_better":true,"metric":"f1","notes":"x","split":"public","value":0.25}'
    assert all(got[i] is None for i in range(3, 11))


def test_constraints_of_the_model_hold_column_wise():
    runs = ['{"status": "ok", "command": "x", "duration_s": 1.5}', '{"status": "ok", "command": "x", "duration_s": -1.5}',
            '{"status": "maybe", "command": "x", "duration_s": 1.5}']
    got = decide("run", runs)
    assert got[1] is None and got[2] is None  # below ge=0; not one of the Literal's values
    datasets = ['{"name": "d", "role": "eval", "rows": 5}', '{"name": "d", "role": "eval", "rows": -5}',
                '{"name": "d", "role": "eval", "rows": 5.0}']
    got = decide("dataset", datasets)
    assert got[0] == '{"name":"d","role":"eval","rows":5}'
    assert got[1] is None and got[2] is None  # negative; a float where an integer belongs


def test_invalid_utf8_leaves_every_row_to_python():
    kinds = pa.array(["score", "score"], pa.string())
    texts = pa.array([b'{"metric": "a", "value": 1.0}', b'{"metric": "\xff", "value": 1.0}'], pa.binary())
    rows, made, left = canonical_payloads(kinds, texts)
    assert len(rows) == 0 and left.to_pylist() == [0, 1]


def test_place_puts_pieces_back_in_row_order():
    rows = pa.array([3, 0, 2, 1], pa.uint64())
    assert place(rows, pa.array(["d", "a", "c", "b"])).to_pylist() == ["a", "b", "c", "d"]


def test_lists_of_strings_and_nested_objects_are_decided_column_wise_too():
    runs = [
        '{"command":["python","eval.py"],"status":"ok","cost":{"tokens":12,"dollars":0.5},"seed":3}',
        '{"command":["python","eval.py","--fast"],"status":"ok","cost":{"tokens":7,"dollars":1},"seed":4}',
        '{"command":["python", "eval.py"],"status":"ok","cost":{"tokens":7,"dollars":1.5},"seed":5}',  # a space
        '{"command":["python","eval.py"],"status":"ok","cost":{"tokens":-7,"dollars":1.5},"seed":6}',  # ge=0
        '{"command":"python eval.py","status":"ok","cost":{"tokens":7},"seed":7}',  # the other form
    ]
    got = decide("run", runs)
    assert got[0] == ('{"command":["python","eval.py"],"cost":{"dollars":0.5,"tokens":12},"environment":{},'
                      '"seed":3,"status":"ok"}')
    assert got[1] == ('{"command":["python","eval.py","--fast"],"cost":{"dollars":1.0,"tokens":7},"environment":{},'
                      '"seed":4,"status":"ok"}')
    assert got[2] is None and got[3] is None
    assert got[4] == '{"command":"python eval.py","cost":{"tokens":7},"environment":{},"seed":7,"status":"ok"}'
    extras = ['{"metric":"acc","value":1.0,"config":{"lr":0.1,"tags":["a","b"],"inner":{"n":1}}}']
    assert decide("score", extras)[0] == ('{"config":{"inner":{"n":1},"lr":0.1,"tags":["a","b"]},'
                                          '"higher_is_better":true,"metric":"acc","split":"public","value":1.0}')


def test_values_are_cut_out_where_they_are_even_when_a_string_holds_the_next_key():
    """Texts laid out as the sample is have their values cut out by offset (no capturing
    pattern); a string holding what looks like the next key must not move the cut."""
    texts = [
        '{"metric": "acc", "value": 0.5, "split": "eval"}',                   # the sample's layout
        '{"metric": "a\\", \\"value\\": 9, \\"split\\": ", "value": 2, "split": "x"}',  # the keys, escaped
        '{"metric":"acc","value":0.25,"split":"dev"}',                        # another layout
        '{"metric": "acc", "value": 0.5, "split": "eval"} ',                  # a space at the end
        '{"metric": "acc", "value": 1e-06, "split": "eval"}',                 # laid out, left to Python
    ]
    got = decide("score", texts)
    for row, made in got.items():
        if made is not None:
            assert made == _slow("score", json.loads(texts[row]))
    assert json.loads(got[1])["metric"] == 'a", "value": 9, "split": '
    assert json.loads(got[1])["value"] == 2.0
    assert got[2] is not None and got[3] is not None and got[4] is None


def test_a_key_name_used_twice_at_different_depths_is_still_decided_right():
    """Cutting by offset needs every key name once; a shape with one name twice is
    matched by its capturing pattern instead."""
    texts = ['{"metric": "acc", "value": 1.0, "config": {"metric": "inner", "value": 2}}',
             '{"metric": "b", "value": 3.5, "config": {"metric": "x", "value": 4}}']
    got = decide("score", texts)
    for row, made in got.items():
        assert made == _slow("score", json.loads(texts[row]))


def test_shapes_learned_in_one_batch_decide_the_next_batches_rows():
    first = decide("score", ['{"metric": "acc", "value": 0.5, "split": "eval"}'])
    later = decide("score", ['{"metric": "f1", "value": 0.75, "split": "dev"}', '{"metric": "f1", "value": -0, "split": "dev"}'])
    assert first[0] is not None and later[0] == '{"higher_is_better":true,"metric":"f1","split":"dev","value":0.75}'
    assert later[1] is None  # a kept shape is no looser than a new one: integer -0 still goes to Python


def test_a_row_of_a_kept_shape_it_cannot_decide_leaves_the_rows_after_it_decided():
    decide("score", ['{"metric": "acc", "value": 0.5}', '{"value": 0.5, "metric": "acc"}'])  # two shapes kept
    # the first row has the first shape, but orjson writes 1e16 otherwise than Arrow: Python's;
    # the rows after it, of either shape, are still decided column-wise
    texts = ['{"metric": "acc", "value": 1e16}'] + ['{"metric": "f1", "value": 0.25}'] * 2 + ['{"value": 2, "metric": "f1"}'] * 3
    got = decide("score", texts)
    assert got[0] is None
    assert got[1] == got[2] == '{"higher_is_better":true,"metric":"f1","split":"public","value":0.25}'
    assert got[3] == got[4] == got[5] == '{"higher_is_better":true,"metric":"f1","split":"public","value":2.0}'


def test_values_with_characters_beyond_ascii_are_cut_out_whole():
    texts = [json.dumps({"metric": m, "value": v, "split": s, "notes": n}, ensure_ascii=False)
             for m, v, s, n in [("café", 0.5, "ünï", "😀 x"), ("ß", 1, "e", ""), ("日本", 2.5, "😀", "é" * 40)] * 3]
    got = decide("score", texts)
    assert all(made is not None for made in got.values())
    for row, made in got.items():
        assert made == _slow("score", json.loads(texts[row]))
