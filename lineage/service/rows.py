"""The data the terminal UI gets back from ``LineageService``: frozen dataclasses only.

The rows (a node in the tree, an event, a score, an artifact, a signal, a generation's
stats...) are plain Python values with no connection or DuckDB type behind them, so the
UI can keep and compare them on any thread. They live apart from the queries that fill
them so that the UI's vocabulary can be read in one place, with the one pure helper that
works on them alone (``first_lineage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# -- the data the UI gets -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    split: str
    higher_is_better: bool

    @property
    def key(self) -> str:
        return f"{self.name}@{self.split}"


@dataclass(frozen=True, slots=True)
class LineageInfo:
    name: str
    nodes: int
    branches: tuple[str, ...]
    metric: Metric | None
    last_seq: int = 0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node as the tree shows it."""

    lineage: str
    node: str
    branch: str | None
    label: str | None
    generation: int
    parent: str | None  # where it hangs in the tree (first known parent)
    parents: tuple[str, ...]  # as recorded, including missing ones
    missing_parent: bool
    children: int
    events: int
    human: int
    ai: int
    system: int
    level: int | None
    best: float | None
    created_seq: int | None
    links: int = 0  # children through a second (or later) parent
    created_us: int | None = None  # when the node was created, µs since the epoch (UTC)
    created_by: str | None = None
    first_seq: int | None = None  # the seqs of the events recorded on the node lie in first_seq..last_seq
    last_seq: int | None = None
    signals: tuple[str, ...] = ()
    severity: int = 0

    also_from: tuple[str, ...] = ()  # further known parents (merge, crossover), beyond ``parent``

    @property
    def other_parents(self) -> tuple[str, ...]:
        return self.also_from

    @property
    def created_at(self) -> datetime | None:
        # made when asked (the detail header), not for each of a page's 1,000 rows: a
        # zone-aware datetime costs ~6 µs to make, a third of building the row
        return None if self.created_us is None else _EPOCH + timedelta(microseconds=self.created_us)

    def share(self, kind: str) -> float | None:
        return getattr(self, kind) / self.events if self.events else None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[NodeRow]
    total: int
    offset: int
    links: list[NodeRow] = field(default_factory=list)  # children through a second parent
    chain: bool = False  # rows are a run of only children: rows[i + 1] is the only child of rows[i]


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    event_id: str
    branch: str
    kind: str
    actor_kind: str
    actor: str
    actor_node: str | None
    occurred_at: datetime
    payload: dict
    summary: str
    caused_by: str | None
    retracted: bool = False


@dataclass(frozen=True, slots=True)
class NodeDetail:
    row: NodeRow
    created_at: datetime | None
    created_by: str | None
    known_parents: tuple[str, ...]
    missing_parents: tuple[str, ...]
    merged_children: tuple[str, ...]  # nodes that name this one as a further parent


@dataclass(frozen=True, slots=True)
class Opening:
    """The first screen, read in one burst: the lineages, the one to open (``lineage``),
    its first page of roots, the children of the first root that has any (``expanded``),
    and the header and events of the node the cursor starts on (the first root)."""
    lineages: list[LineageInfo]
    lineage: str | None = None
    roots: Page | None = None
    expanded: NodeRow | None = None
    children: Page | None = None
    detail: NodeDetail | None = None
    events: list[EventRow] | None = None


@dataclass(frozen=True, slots=True)
class DiffEntry:
    seq: int
    event_id: str
    actor: str
    paths: tuple[str, ...]
    lines_added: int
    lines_removed: int
    text: str | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreRow:
    metric: str
    split: str
    value: float
    higher_is_better: bool
    actor: str
    seq: int
    event_id: str
    occurred_at: datetime
    latest: bool
    retracted: bool
    parent_value: float | None  # the first parent's latest value of the same metric and split


@dataclass(frozen=True, slots=True)
class ArtifactRow:
    artifact: str  # dataset | checkpoint | diff | snapshot
    name: str | None
    role: str | None
    uri: str | None
    content_hash: str | None
    bytes: int | None
    rows: int | None
    step: int | None
    actor: str
    seq: int
    integrity: str  # ok | modified | missing | unchecked | no-hash
    detail: str


@dataclass(frozen=True, slots=True)
class SignalRow:
    node: str
    signal: str
    severity: str
    metric: str | None
    detail: str
    evidence: tuple[EventRow, ...]
    seq: int


@dataclass(frozen=True, slots=True)
class GenerationStat:
    generation: int
    nodes: int
    best: float | None
    best_node: str | None
    human_share: float | None
    ai_share: float | None
    level3: int


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened after a seq: the new head, new nodes, and nodes whose making changed."""

    seq: int
    new_nodes: list[NodeRow]
    touched: list[NodeRow]
    lineages_changed: bool


@dataclass(frozen=True, slots=True)
class Filter:
    """Search and filter criteria; empty fields do not filter."""

    text: str = ""  # node id or label (substring, case-insensitive)
    actor: str = ""  # an actor (ai:gpt-5) or an actor kind (human, ai, system)
    level: int | None = None
    signal: str = ""
    min_score: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.actor or self.signal) and self.level is None and self.min_score is None


# -- helpers -------------------------------------------------------------------------------------


def first_lineage(lineages: list[LineageInfo], prefer: str | None = None) -> str | None:
    """The lineage to open: ``prefer`` when there is one by that name, else the one
    written to last."""
    if any(li.name == prefer for li in lineages):
        return prefer
    return max(lineages, key=lambda li: li.last_seq).name if lineages else None
