"""One typed payload model per event kind.

Payloads accept fields they do not declare (``extra="allow"``): importers keep every
field of the source record, and a field this schema has no place for is stored, never
dropped. Declared fields are strict about type and finiteness, so a NaN score or a
string where a number belongs is refused with the field named.

``VERSION`` is the current payload version of each kind; older versions are upcast
(see ``schemas.upcast``) before validation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    # strict: "3" is not a number and 1 is not a string; a producer's type bug must surface.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True, strict=True)


class NodeCreated(Payload):
    """A candidate successor came into being. Generation is derived from the parents."""

    parents: list[str] = Field(default_factory=list, description="parent node ids; several for crossover or merges")
    label: str | None = None
    status: Literal["candidate", "failed", "accepted", "rejected"] | None = None


class Proposal(Payload):
    """Stage *propose*: the idea behind a node."""

    idea: str = Field(min_length=1)
    rationale: str | None = None


class FileChange(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    path: str
    old_path: str | None = None
    change: Literal["added", "modified", "deleted", "renamed", "binary"] = "modified"
    lines_added: int = Field(default=0, ge=0)
    lines_removed: int = Field(default=0, ge=0)


class CodeDiff(Payload):
    """Stage *implement*: a unified diff, kept in the object store by hash.

    The diff is against ``base_node`` when given, else against the node's first parent."""

    base_node: str | None = Field(default=None, description="the parent this diff applies to (default: the first parent)")
    diff_object: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the unified diff text in the object store")
    snapshot_object: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of a full tree snapshot manifest, when the loop recorded one")
    paths: list[str] = Field(default_factory=list)
    files: list[FileChange] = Field(default_factory=list)
    lines_added: int = Field(default=0, ge=0)
    lines_removed: int = Field(default=0, ge=0)
    base_tree: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    result_tree: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class Dataset(Payload):
    """Stage *experiment*: data a node was trained or evaluated on."""

    name: str = Field(min_length=1)
    uri: str | None = None
    content_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    rows: int | None = Field(default=None, ge=0)
    bytes: int | None = Field(default=None, ge=0)
    role: Literal["train", "eval", "heldout"]


class Cost(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True, strict=True)
    tokens: int | None = Field(default=None, ge=0)
    dollars: float | None = Field(default=None, ge=0)
    gpu_hours: float | None = Field(default=None, ge=0)


class Run(Payload):
    """Stage *experiment*: a command that was executed for this node."""

    command: list[str] | str
    seed: int | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    status: Literal["ok", "failed", "timeout", "crashed", "running"]
    duration_s: float | None = Field(default=None, ge=0)
    cost: Cost | None = None
    workdir: str | None = Field(default=None, description="working directory relative to the node's tree")
    exit_code: int | None = None


class Checkpoint(Payload):
    """Stage *experiment*: model weights or state written by a run."""

    uri: str = Field(min_length=1)
    content_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    bytes: int | None = Field(default=None, ge=0)
    step: int | None = Field(default=None, ge=0)


class Score(Payload):
    """Stage *validate*: one metric on one split."""

    metric: str = Field(min_length=1)
    value: float
    split: str = "public"
    higher_is_better: bool = True


class Review(Payload):
    """Stage *validate*: a judgement on a node."""

    verdict: Literal["approve", "reject", "comment"]
    text: str | None = None


class Selection(Payload):
    """Stage *choose*: a node chosen as a parent, or promoted as the best."""

    node: str = Field(min_length=1, description="the node that was chosen")
    purpose: Literal["parent", "best", "promote"] = "best"
    reason: str | None = None


class Annotation(Payload):
    """Stage *learn*: lessons learned, notes, corrections."""

    text: str = Field(min_length=1)
    topic: str | None = None


class Retraction(Payload):
    """An earlier event declared wrong. Nothing is deleted; readers honour this."""

    event_id: str = Field(pattern=r"^[0-9a-fA-F-]{32,36}$")
    reason: str = Field(min_length=1)


class BranchCreated(Payload):
    """A named line of development forked at a node."""

    name: str = Field(min_length=1)
    from_node: str | None = None
    from_branch: str | None = None


class MetricReplay(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True, strict=True)
    metric: str
    split: str = "public"
    recorded: float | None = None
    reproduced: float | None = None
    delta: float | None = None
    tolerance: float | None = None


class Replay(Payload):
    """The outcome of re-executing a node."""

    node: str = Field(min_length=1)
    outcome: Literal["reproduced", "drifted", "failed"]
    metrics: list[MetricReplay] = Field(default_factory=list)
    reason: str | None = None
    commands: list[list[str] | str] = Field(default_factory=list)
    duration_s: float | None = Field(default=None, ge=0)


MODELS: dict[str, type[Payload]] = {
    "node_created": NodeCreated,
    "proposal": Proposal,
    "code_diff": CodeDiff,
    "dataset": Dataset,
    "run": Run,
    "checkpoint": Checkpoint,
    "score": Score,
    "review": Review,
    "selection": Selection,
    "annotation": Annotation,
    "retraction": Retraction,
    "branch_created": BranchCreated,
    "replay": Replay,
}

KINDS: tuple[str, ...] = tuple(MODELS)

# Current payload version per kind. `score` is at 2: version 1 called the metric `name`
# and had no split (see schemas.upcast).
VERSION: dict[str, int] = {kind: 1 for kind in KINDS} | {"score": 2}

# Research-loop stage of each kind (DESIGN.md).
STAGE: dict[str, str] = {
    "proposal": "propose",
    "code_diff": "implement",
    "dataset": "experiment",
    "run": "experiment",
    "checkpoint": "experiment",
    "score": "validate",
    "review": "validate",
    "annotation": "learn",
    "selection": "choose",
}

__all__ = ["MODELS", "KINDS", "VERSION", "STAGE", "Payload"]


