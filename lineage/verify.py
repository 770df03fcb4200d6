"""Tamper evidence: recompute the hash chain across Parquet segments and DuckDB, and every object.

The chain check runs inside DuckDB: the canonical body of ``schemas.envelope`` is a plain
join of columns, so SQL rebuilds it and ``sha256()`` rehashes a million events in about a
second, with no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from lineage.db import first_row
from lineage.objects import sha256_file
from lineage.segments import HOT_EVENTS, _quote
from lineage.store import Store
from schemas.chain import GENESIS_HASH, NULL, SEP

_BODY = " || chr(31) || ".join([
    "seq::VARCHAR", "event_id", "lineage", "branch", f"coalesce(node, chr({ord(NULL)}))", "kind",
    "actor_kind", "actor", f"coalesce(actor_node, chr({ord(NULL)}))", "epoch_us(occurred_at)::VARCHAR",
    "epoch_us(recorded_at)::VARCHAR", "payload::VARCHAR", "schema_version::VARCHAR",
    f"coalesce(caused_by, chr({ord(NULL)}))",
])
assert SEP == "\x1f"

_COLS = ("seq, event_id, lineage, branch, node, kind, actor_kind, actor, actor_node, occurred_at, "
         "recorded_at, payload, schema_version, caused_by, prev_hash, hash")


@dataclass
class Finding:
    what: str  # chain | segment | object | store
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class VerifyReport:
    events: int = 0
    segments: int = 0
    objects: int = 0
    head: tuple[int, str] = (0, GENESIS_HASH)  # the newest event's seq and hash: record it elsewhere
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _first_chain_break(con: duckdb.DuckDBPyConnection, source: str) -> tuple[str, int, int] | None:
    """The earliest break in the chain as (what, first bad seq, seq after a gap), or None.

    One pass: each row is rehashed and compared with its predecessor by a window over seq.
    (Measured faster than joining a materialized (seq, hash) table to itself.)
    """
    row = first_row(con.execute(f"""
        WITH c AS (
            SELECT seq, hash, prev_hash,
                   lag(seq) OVER w AS before_seq,
                   lag(hash) OVER w AS before_hash,
                   sha256(prev_hash || chr(31) || {_BODY}) AS recomputed
            FROM (SELECT {_COLS} FROM {source}) WINDOW w AS (ORDER BY seq)
        )
        SELECT seq, coalesce(before_seq, 0), hash = recomputed
        FROM c
        WHERE hash != recomputed
           OR prev_hash != coalesce(before_hash, '{GENESIS_HASH}')
           OR seq != coalesce(before_seq, 0) + 1
        ORDER BY seq LIMIT 1
    """))
    if row is None:
        return None
    seq, before, hash_ok = row
    if seq > before + 1:
        return ("gap", before + 1, seq)
    if seq == before:
        return ("dup", seq, seq)
    if not hash_ok:
        return ("edited", seq, seq)
    return ("link", seq, seq)


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as ``lineage verify`` prints the head) -> (seq, hash)."""
    seq, sep, digest = text.strip().partition(":")
    digest = digest.strip().lower()
    if not sep or not seq.strip().isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{text!r} is not an anchor: expected SEQ:HASH, as `lineage verify` prints the head "
                         "(e.g. 1042:3f5a…, the 64 hex digits whole)")
    return int(seq), digest


def verify(store: Store, *, objects: bool = True, progress: Callable[[str], None] | None = None,
           anchors: Iterable[tuple[int, str]] = ()) -> VerifyReport:
    """Check the store: segment files against their recorded hashes, the hash chain over every
    event, every object against its name.

    A chain checks itself only up to its newest event: deleting the newest events, or
    rewriting the log and rehashing it from some event on, leaves a chain that verifies.
    ``anchors`` close that: (seq, hash) pairs recorded outside the store (``report.head``
    of an earlier verify, kept in a notebook, a commit message, a paper's appendix). Each
    must still be in the chain, with that hash."""
    report = VerifyReport()
    say = progress or (lambda _msg: None)
    with store.reader() as con:
        segs = con.execute("SELECT file, first_seq, last_seq, events, file_sha256 FROM segments ORDER BY first_seq").fetchall()
        report.segments = len(segs)
        files: list[Path] = []
        say(f"checking {len(segs)} segment files")
        for name, first, last, _n, digest in segs:
            path = store.segments_dir / name
            if not path.exists():
                report.findings.append(Finding("segment", str(path), f"segment holding events {first}..{last} is missing"))
                return report
            if sha256_file(path) != digest:
                report.findings.append(Finding("segment", str(path),
                    f"file does not match the hash recorded when it was sealed (events {first}..{last}): it was modified"))
                return report
            files.append(path)
        known = {s[0] for s in segs}
        for extra in sorted(store.segments_dir.glob("*.parquet")):
            if extra.name not in known:
                report.warnings.append(f"{extra}: not a registered segment (left by an interrupted seal?); ignored")
        if files:
            source = f"(SELECT {_COLS} FROM read_parquet([{', '.join(_quote(f) for f in files)}]) UNION ALL SELECT {_COLS} FROM ({HOT_EVENTS}))"
        else:
            source = f"({HOT_EVENTS})"
        say("recomputing the hash chain")
        try:
            report.events = first_row(con.execute(f"SELECT count(*) FROM {source}"))[0]
            bad = _first_chain_break(con, source)
        except duckdb.Error as exc:
            report.findings.append(Finding("segment", str(store.segments_dir), f"cannot be read: {exc}"))
            return report
        if bad:
            what, seq, after_gap = bad
            if what == "gap":
                missing = f"event {seq} is" if seq == after_gap - 1 else f"events {seq}..{after_gap - 1} are"
                report.findings.append(Finding("chain", f"event seq {seq}", f"{missing} missing (deleted?)"))
            elif what == "dup":
                report.findings.append(Finding("chain", f"event seq {seq}", "appears more than once (copied or replayed rows)"))
            elif what == "edited":
                report.findings.append(Finding("chain", f"event seq {seq}", "content does not match its hash: the event was edited"))
            else:
                report.findings.append(Finding("chain", f"event seq {seq}", "prev_hash does not link to the previous event: the chain was cut or reordered"))
            where = _locate(seq, segs)
            if where:
                report.findings[-1].message += f" (in {where})"
            return report
        head = first_row(con.execute(f"SELECT max(seq) FROM {source}"))[0] or 0
        last_sealed = segs[-1][2] if segs else 0
        if head < last_sealed:
            report.findings.append(Finding("chain", f"event seq {head + 1}", f"events {head + 1}..{last_sealed} are missing"))
            return report
        if head:
            report.head = (head, first_row(con.execute(f"SELECT hash FROM {source} WHERE seq = ?", [head]))[0])
        for seq, digest in sorted(set(anchors)):
            if seq > head:
                report.findings.append(Finding("chain", f"event seq {seq}",
                    f"an anchor was recorded at seq {seq}, and the log ends at {head}: "
                    f"events {head + 1}..{seq} were deleted"))
                return report
            stored = first_row(con.execute(f"SELECT hash FROM {source} WHERE seq = ?", [seq])) if seq else (GENESIS_HASH,)
            if stored is None or stored[0] != digest:
                report.findings.append(Finding("chain", f"event seq {seq}",
                    f"its hash is not the one recorded in the anchor ({digest[:16]}…): the log was rewritten "
                    f"and rehashed at or before seq {seq}"))
                return report
    if objects:
        say("rehashing objects")
        for digest, path in store.objects:
            report.objects += 1
            if sha256_file(path) != digest:
                report.findings.append(Finding("object", str(path), f"object {digest[:12]}… no longer hashes to its name: it was modified"))
                return report
    return report


def _locate(seq: int, segs: list) -> str | None:
    for name, first, last, *_ in segs:
        if first <= seq <= last:
            return f"segment {name}"
    return "lineage.duckdb (event_log)"
