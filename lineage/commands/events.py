"""Event commands: record, log, show."""

from __future__ import annotations

import json
import sys

import click
import orjson
from rich.table import Table

from lineage.commands._common import console, open_store, store_option
from lineage.errors import LineageError
from lineage.query import run_query
from lineage.store import Store
from lineage.summary import summarize
from schemas import Draft, prepare
from schemas.envelope import DEFAULT_BRANCH


def register(cli: click.Group) -> None:
    cli.add_command(record)
    cli.add_command(log)
    cli.add_command(show)


def _read_stdin_json() -> object:
    raw = sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineageError(f"stdin: invalid UTF-8 at byte {exc.start}; send UTF-8 JSON") from None
    try:
        # The stdlib parser accepts NaN/Infinity so validation can then name the field.
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineageError(f"stdin: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


@click.command()
@store_option
@click.option("--lineage", "lineage_name", help="Lineage (campaign) name.")
@click.option("--branch", default=None, help=f"Branch (default {DEFAULT_BRANCH}).")
@click.option("--node", default=None, help="Node the event is about.")
@click.option("--kind", default=None, help="Event kind; without it, read a whole JSON envelope from stdin.")
@click.option("--actor", default=None, help="human:<name> | ai:<model> | system:<tool> (required).")
@click.option("--actor-node", default=None, help="Node that acted (an AI that is part of the lineage).")
@click.option("--payload", default=None, help="Payload JSON, or - to read it from stdin.")
@click.option("--caused-by", default=None, help="Event id this event follows from.")
def record(store_dir, lineage_name, branch, node, kind, actor, actor_node, payload, caused_by) -> None:
    """Record one event, from flags or as a JSON envelope on stdin.

    \b
      lineage record --lineage L --node n7 --kind score --actor system:eval \\
                     --payload '{"metric": "acc", "value": 0.91}'
      echo '{"lineage": "L", "kind": "proposal", "actor": "ai:gpt-5", "node": "n8",
             "payload": {"idea": "cache the parser"}}' | lineage record
    """
    if kind is None:
        env = _read_stdin_json()
        if not isinstance(env, dict):
            raise LineageError(f"stdin: expected a JSON object (an event envelope), got {type(env).__name__}")
        unknown = set(env) - {"lineage", "branch", "node", "kind", "actor", "actor_node", "payload",
                              "occurred_at", "caused_by", "event_id", "schema_version"}
        if unknown:
            raise LineageError(f"stdin: unknown envelope field(s) {', '.join(sorted(unknown))}; put them in payload")
        draft = Draft(
            lineage=lineage_name or env.get("lineage"), kind=env.get("kind"), actor=actor or env.get("actor"),
            payload=env.get("payload", {}), node=node or env.get("node"),
            branch=branch or env.get("branch") or DEFAULT_BRANCH, actor_node=actor_node or env.get("actor_node"),
            occurred_at=env.get("occurred_at"), caused_by=caused_by or env.get("caused_by"),
            event_id=env.get("event_id"), schema_version=env.get("schema_version"),
        )
    else:
        if payload == "-":
            data = _read_stdin_json()
        elif payload:
            try:
                data = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise LineageError(f"--payload: not JSON (column {exc.colno}: {exc.msg})") from None
        else:
            data = {}
        draft = Draft(lineage=lineage_name, kind=kind, actor=actor, payload=data, node=node,
                      branch=branch or DEFAULT_BRANCH, actor_node=actor_node, caused_by=caused_by)
    if not draft.lineage:
        raise LineageError("--lineage is required (or a \"lineage\" field in the JSON envelope)")
    prepared = prepare(draft)
    store = open_store(store_dir)
    missing = _missing_parents(store, prepared)
    with store.writer() as w:
        ack = w.append(prepared)
    console.print(f"recorded seq {ack.seq} {prepared.kind} {ack.event_id}")
    if missing:
        console.print(f"[yellow]note:[/] parent(s) {', '.join(missing)} of node {prepared.node} are not in lineage "
                      f"{prepared.lineage}; the node is kept and flagged as having a missing parent")


def _missing_parents(store: Store, prepared) -> list[str]:
    if prepared.kind != "node_created":
        return []
    parents = orjson.loads(prepared.payload_json).get("parents") or []
    if not parents:
        return []
    known = run_query(store, "SELECT DISTINCT node FROM events WHERE kind = 'node_created' AND lineage = ? AND node IN (SELECT unnest(?::VARCHAR[]))",
                      [prepared.lineage, parents]).column("node").to_pylist()
    return [p for p in parents if p not in set(known)]


def _filters(lineage_name, branch, node, kind, actor, since):
    where, params = [], []
    for col, val in (("lineage", lineage_name), ("branch", branch), ("node", node), ("kind", kind)):
        if val:
            where.append(f"{col} = ?")
            params.append(val)
    if actor:
        if actor in ("human", "ai", "system") or actor.endswith(":"):
            where.append("actor_kind = ?")
            params.append(actor.rstrip(":"))
        else:
            where.append("actor = ?")
            params.append(actor)
    if since:
        where.append("seq > ?")
        params.append(since)
    return (" WHERE " + " AND ".join(where)) if where else "", params


@click.command()
@store_option
@click.option("--lineage", "lineage_name", default=None)
@click.option("--branch", default=None)
@click.option("--node", default=None)
@click.option("--kind", default=None)
@click.option("--actor", default=None, help="An actor (ai:gpt-5) or a kind of actor (human, ai, system).")
@click.option("--since", type=int, default=None, help="Only events after this seq.")
@click.option("-n", "--limit", type=int, default=50, show_default=True, help="Show the last N matching events (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, whole envelopes.")
def log(store_dir, lineage_name, branch, node, kind, actor, since, limit, as_json) -> None:
    """List events, newest last."""
    store = open_store(store_dir)
    where, params = _filters(lineage_name, branch, node, kind, actor, since)
    inner = f"SELECT * FROM events{where} ORDER BY seq DESC" + (f" LIMIT {int(limit)}" if limit else "")
    table = run_query(store, f"SELECT * FROM ({inner}) ORDER BY seq", params)
    rows = table.to_pylist()
    if as_json:
        out = sys.stdout.buffer
        for r in rows:
            r["payload"] = orjson.Fragment(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
            out.write(orjson.dumps(r, option=orjson.OPT_NAIVE_UTC) + b"\n")
        return
    if not rows:
        console.print("no events match")
        return
    console.print(_events_table(rows))


def _events_table(rows: list[dict], *, show_node: bool = True) -> Table:
    t = Table(box=None, header_style="bold", pad_edge=False)
    # Fixed columns keep their width; the summary takes what is left of the terminal.
    t.add_column("seq", justify="right", style="dim", no_wrap=True)
    t.add_column("time", style="dim", no_wrap=True)
    if show_node:
        t.add_column("node", style="cyan", no_wrap=True, max_width=24, overflow="ellipsis")
    t.add_column("kind", no_wrap=True)
    t.add_column("actor", no_wrap=True, max_width=22, overflow="ellipsis")
    t.add_column("what", no_wrap=True, overflow="ellipsis", max_width=max(24, console.width - (85 if show_node else 60)))
    colors = {"human": "green", "ai": "magenta", "system": "blue"}
    for r in rows:
        p = r["payload"]
        p = orjson.loads(p) if isinstance(p, str) else p
        cells = [str(r["seq"]), r["occurred_at"].strftime("%Y-%m-%d %H:%M")]
        if show_node:
            node = r["node"] or "-"
            cells.append(node if r["branch"] == DEFAULT_BRANCH else f"{node} [{r['branch']}]")
        cells += [r["kind"], f"[{colors.get(r['actor_kind'], 'white')}]{r['actor']}[/]", summarize(r["kind"], p)]
        t.add_row(*cells)
    return t


@click.command()
@store_option
@click.argument("node")
@click.option("--lineage", "lineage_name", default=None, help="Needed only if several lineages have a node with this id.")
def show(store_dir, node, lineage_name) -> None:
    """Show one node: parents, children, scores and its events."""
    store = open_store(store_dir)
    where = "node = ?" + (" AND lineage = ?" if lineage_name else "")
    params = [node] + ([lineage_name] if lineage_name else [])
    rows = run_query(store, f"SELECT * FROM events WHERE {where} ORDER BY seq", params).to_pylist()
    if not rows:
        raise LineageError(f"node {node!r} not found" + (f" in lineage {lineage_name!r}" if lineage_name else "") +
                           "; list nodes with `lineage log --kind node_created`")
    lineages = sorted({r["lineage"] for r in rows})
    if len(lineages) > 1:
        raise LineageError(f"node {node!r} exists in several lineages ({', '.join(lineages)}); pass --lineage")
    lin = lineages[0]
    created = next((r for r in rows if r["kind"] == "node_created"), None)
    payload = orjson.loads(created["payload"]) if created else {}
    children = run_query(
        store,
        "SELECT DISTINCT node FROM events WHERE kind = 'node_created' AND lineage = ? "
        "AND list_contains(CAST(json_extract(payload, '$.parents') AS VARCHAR[]), ?) ORDER BY node",
        [lin, node],
    ).column("node").to_pylist()
    console.print(f"[bold]{node}[/]  lineage [cyan]{lin}[/]  branch {rows[0]['branch']}")
    if payload.get("label"):
        console.print(f"label     {payload['label']}")
    console.print(f"parents   {', '.join(payload.get('parents') or []) or '(root)'}")
    console.print(f"children  {', '.join(children) or '(none)'}")
    scores = [orjson.loads(r["payload"]) for r in rows if r["kind"] == "score"]
    if scores:
        console.print("scores    " + "  ".join(f"{s['metric']}={s['value']:.6g} ({s.get('split', 'public')})" for s in scores))
    console.print()
    console.print(_events_table(rows, show_node=False))
