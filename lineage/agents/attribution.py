"""Who made a commit: a person, an AI agent, or automation, and the evidence for it.

Rules, in the order they are tried for each identity (an author, or a co-author named by a
``Co-authored-by:`` trailer):

1. the user's mapping file (identity -> actor) wins over everything below;
2. ``noreply@anthropic.com`` is Claude: the name names the model
   (``Claude Opus 4.5 <noreply@anthropic.com>`` -> ``ai:claude-opus-4.5``);
   ``aider (provider/model) <noreply@aider.chat>`` is aider driving that model;
3. a known agent or bot identity (``KNOWN``): agents are ``ai:``, dependency and CI bots
   are ``system:``;
4. any other GitHub App (``name[bot]``) is automation: ``system:<name>``;
5. everyone else is a person: ``human:<name>``.

Identities are matched whole, never by substring: an exact email, the GitHub noreply
address of a known login (``123+claude[bot]@users.noreply.github.com``), or an exact
``[bot]`` account name (no person is called ``claude[bot]``). A plain name is never enough:
``Claude <claude.dupont@example.fr>`` and ``Claudette``, or ``bob@openhands-fan.org``,
are people.

A commit then has one of four involvements:

- ``human``: a person wrote it;
- ``ai``: an agent is the author (``openhands``, ``copilot-swe-agent[bot]``, ...);
- ``mixed``: a person and an AI both took part: a human author with an AI co-author
  trailer, a marker such as "Generated with Claude Code", an aider-suffixed author name,
  or an agent author with a human co-author;
- ``system``: automation (dependabot, renovate, pre-commit-ci, other GitHub Apps).

In a mixed commit the person *leads* (their actor records the node, the proposal and
any merge selection) and the AI *implements* (its actor records the code diff). That is
how "mixed" reaches involvement without any new concept: the node has a human decision
and an AI diff, so by lines the change is the model's and by decisions it is the person's.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineage.errors import LineageError
from schemas.actor import parse_actor
from schemas.errors import SchemaError

HUMAN, AI, MIXED, SYSTEM = "human", "ai", "mixed", "system"

_NOREPLY = re.compile(r"^(?:\d+\+)?(?P<login>[^@\s]+)@users\.noreply\.github\.com$", re.IGNORECASE)
_TRAILER = re.compile(r"^[ \t]*co-authored-by:[ \t]*(?P<name>[^<\n]*?)[ \t]*<(?P<email>[^>\n]*)>[ \t]*$", re.IGNORECASE | re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_AIDER_SUFFIX = " (aider)"
_AIDER_COAUTHOR = re.compile(r"^aider\s*\((?P<model>[^)]+)\)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Identity:
    """A git identity as written in a commit: ``Name <email>``."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    @classmethod
    def parse(cls, text: str) -> Identity:
        m = re.match(r"^\s*(?P<name>[^<]*?)\s*<(?P<email>[^>]*)>\s*$", text)
        if m:
            return cls(m.group("name"), m.group("email"))
        return cls(text.strip(), "")


@dataclass(frozen=True, slots=True)
class Known:
    """A known agent or bot: matched by exact email or GitHub login, never by substring."""

    actor: str
    agent: str
    emails: frozenset[str] = frozenset()
    logins: frozenset[str] = frozenset()


def _known(actor: str, agent: str, *, emails: Iterable[str] = (), logins: Iterable[str] = ()) -> Known:
    return Known(actor, agent, frozenset(e.lower() for e in emails), frozenset(x.lower() for x in logins))


# Coding agents (ai:) and automation (system:). Logins are GitHub account names; a GitHub
# App commits as ``name[bot] <ID+name[bot]@users.noreply.github.com>``.
KNOWN: tuple[Known, ...] = (
    _known("ai:openhands", "openhands", emails=["openhands@all-hands.dev"], logins=["openhands-agent", "openhands[bot]", "openhands-ai[bot]"]),
    _known("ai:copilot", "copilot", logins=["copilot-swe-agent[bot]", "copilot", "copilot[bot]"]),
    _known("ai:devin", "devin", logins=["devin-ai-integration[bot]"]),
    _known("ai:claude", "claude", logins=["claude[bot]", "claude-code[bot]"]),
    _known("ai:jules", "jules", logins=["google-labs-jules[bot]"]),
    _known("ai:codex", "codex", logins=["chatgpt-codex-connector[bot]", "codex[bot]"]),
    _known("ai:cursor", "cursor", emails=["cursoragent@cursor.com"], logins=["cursor[bot]", "cursor-agent[bot]"]),
    _known("ai:sweep", "sweep", logins=["sweep-ai[bot]"]),
    _known("ai:gemini", "gemini", logins=["gemini-code-assist[bot]", "gemini-cli[bot]"]),
    _known("ai:amazon-q", "amazon-q", logins=["amazon-q-developer[bot]"]),
    _known("ai:aider", "aider", emails=["noreply@aider.chat"]),
    _known("system:dependabot", "dependabot", emails=["support@dependabot.com"], logins=["dependabot[bot]", "dependabot-preview[bot]"]),
    _known("system:renovate", "renovate", emails=["bot@renovateapp.com"], logins=["renovate[bot]", "renovate-bot"]),
    _known("system:pre-commit-ci", "pre-commit-ci", logins=["pre-commit-ci[bot]"]),
    _known("system:github-actions", "github-actions", emails=["actions@github.com"], logins=["github-actions[bot]", "github-actions"]),
    _known("system:snyk", "snyk", emails=["snyk-bot@snyk.io"], logins=["snyk-bot"]),
    _known("system:mergify", "mergify", logins=["mergify[bot]"]),
)

_BY_EMAIL = {e: k for k in KNOWN for e in k.emails}
_BY_LOGIN = {x: k for k in KNOWN for x in k.logins}

# Text in a commit message that shows an AI took part: (pattern, agent, actor).
MARKERS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"generated with \[?claude code\]?", re.IGNORECASE), "claude-code", "ai:claude-code"),
    (re.compile(r"generated with \[?opencode\]?", re.IGNORECASE), "opencode", "ai:opencode"),
    (re.compile(r"\Aaider: ", re.IGNORECASE), "aider", "ai:aider"),
)


def model_slug(name: str) -> str:
    """``Claude Opus 4.5`` -> ``claude-opus-4.5``: the model name kept, in actor form."""
    return re.sub(r"\s+", "-", _CONTROL.sub(" ", name).strip().lower())[:200] or "unknown"


def _clean(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())[:200]


def person_actor(identity: Identity) -> str:
    name = _clean(identity.name) or _clean(identity.email) or "unknown"
    return f"human:{name}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one identity is: its actor, and why."""

    actor: str
    rule: str
    evidence: str
    agent: str | None = None

    @property
    def kind(self) -> str:
        return self.actor.split(":", 1)[0]


# -- the mapping file ----------------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """A user's identity -> actor table; it overrides or extends the built-in rules.

    Keys: ``Name <email>`` (that exact identity), an email (``bob@example.com`` or
    ``<bob@example.com>``), or a bare name. Matching ignores case and repeated spaces;
    the most specific key wins.
    """

    identities: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    source: str = "mapping"

    @classmethod
    def from_dict(cls, data: MappingABC[str, Any], source: str = "mapping") -> Mapping:
        table = data.get("identities", data) if isinstance(data, MappingABC) else None
        if not isinstance(table, MappingABC):
            raise LineageError(f"{source}: expected a table of identity = actor (optionally under [identities])")
        out = cls(source=source)
        for key, actor in table.items():
            if not isinstance(actor, str):
                raise LineageError(f"{source}: {key!r}: expected an actor string like 'ai:claude-opus-4.5', got {type(actor).__name__}")
            try:
                parse_actor(actor, field=key)
            except SchemaError as exc:
                raise LineageError(f"{source}: {exc}") from None
            key_s = str(key).strip()
            if "<" in key_s and key_s.endswith(">"):
                ident = Identity.parse(key_s)
                if ident.name:
                    out.identities[_norm(f"{ident.name} <{ident.email}>")] = actor
                else:
                    out.emails[_norm(ident.email)] = actor
            elif "@" in key_s:
                out.emails[_norm(key_s)] = actor
            else:
                out.names[_norm(key_s)] = actor
        return out

    def lookup(self, identity: Identity) -> Verdict | None:
        for table, key in (
            (self.identities, _norm(f"{identity.name} <{identity.email}>")),
            (self.emails, _norm(identity.email)),
            (self.names, _norm(identity.name)),
        ):
            actor = table.get(key) if key else None
            if actor:
                return Verdict(actor, "mapping", f"{self.source}: {identity} -> {actor}")
        return None

    def __bool__(self) -> bool:
        return bool(self.identities or self.emails or self.names)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def load_mapping(source: str | Path | MappingABC | Mapping | None) -> Mapping | None:
    """A mapping from a TOML or JSON file, a dict, or None."""
    if source is None or isinstance(source, Mapping):
        return source
    if isinstance(source, MappingABC):
        return Mapping.from_dict(source)
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LineageError(f"mapping file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise LineageError(f"mapping file {path}: not valid {kind}: {exc}") from None
    return Mapping.from_dict(data, source=str(path))


# -- classifying identities ----------------------------------------------------------


def classify(identity: Identity, mapping: Mapping | None = None) -> Verdict:
    """The actor of one identity, with the rule and evidence that decided it."""
    if mapping:
        hit = mapping.lookup(identity)
        if hit:
            return hit
    email = identity.email.strip().lower()
    name = identity.name.strip()
    if email == "noreply@anthropic.com":
        slug = model_slug(name) if name else "claude"
        return Verdict(f"ai:{slug}", "agent-identity", f"{identity}: Anthropic's noreply address; the name is the model", "claude")
    if email == "noreply@aider.chat":
        m = _AIDER_COAUTHOR.match(name)
        if m:
            model = m.group("model").strip().rsplit("/", 1)[-1]
            return Verdict(f"ai:{model_slug(model)}", "agent-identity", f"{identity}: aider driving {m.group('model').strip()}", "aider")
    known = _BY_EMAIL.get(email)
    login = None
    if known is None:
        m = _NOREPLY.match(email)
        if m:
            login = m.group("login").lower()
            known = _BY_LOGIN.get(login)
    if known is None and name.lower().endswith("[bot]"):
        known = _BY_LOGIN.get(name.lower())
    if known is not None:
        rule = "agent-identity" if known.actor.startswith("ai:") else "bot-identity"
        return Verdict(known.actor, rule, f"{identity} is {known.agent}", known.agent)
    bot = login if login and login.endswith("[bot]") else name.lower() if name.lower().endswith("[bot]") else None
    if bot:
        tool = bot[: -len("[bot]")] or "bot"
        return Verdict(f"system:{tool}", "unknown-bot", f"{identity} is a GitHub App not known as an AI agent; "
                       "assumed automation (map it in a mapping file if it is an AI)", tool)
    return Verdict(person_actor(identity), "person", f"{identity} is a person (no agent identity matches it whole)")


def co_authors(message: str) -> list[Identity]:
    """Identities named by ``Co-authored-by:`` trailers, in order, without repeats."""
    seen, out = set(), []
    for m in _TRAILER.finditer(message):
        ident = Identity(m.group("name").strip(), m.group("email").strip())
        key = (ident.name.lower(), ident.email.lower())
        if key not in seen:
            seen.add(key)
            out.append(ident)
    return out


# -- a commit ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """The attribution of one commit.

    ``lead`` records the node, its proposal and merge selections; ``implementer`` records
    its code diff. They differ only when ``involvement`` is ``mixed``.
    """

    involvement: str
    lead: str
    implementer: str
    rule: str
    evidence: tuple[str, ...]
    human: str | None = None
    ai: tuple[str, ...] = ()
    agent: str | None = None

    def payload(self, actor: str) -> dict[str, Any]:
        """The evidence stored on an event recorded by ``actor``."""
        out: dict[str, Any] = {"actor": actor, "involvement": self.involvement, "rule": self.rule,
                               "evidence": list(self.evidence)}
        if self.human:
            out["human"] = self.human
        if self.ai:
            out["ai"] = list(self.ai)
        if self.agent:
            out["agent"] = self.agent
        return out


def attribute_commit(author: Identity, message: str, mapping: Mapping | None = None, *,
                     default_actor: str | None = None) -> Attribution:
    """Decide who made a commit from its author, its trailers and its message.

    ``default_actor``: the actor of an author no rule or mapping recognises (instead of
    ``human:<name>``), for repositories where one agent commits under a made-up identity.
    """
    a = classify(author, mapping)
    if a.rule == "person" and default_actor:
        a = Verdict(default_actor, "default-actor", f"{author}: unrecognised identity, attributed to {default_actor} as asked")
    evidence = [f"author: {a.evidence}"]
    cos = [(c, classify(c, mapping)) for c in co_authors(message)]
    ai_cos = [v for _, v in cos if v.kind == AI]
    human_cos = [v for _, v in cos if v.kind == HUMAN]
    for c, v in cos:
        evidence.append(f"co-author: {v.evidence}" if v.rule != "person" else f"co-author: {c} is a person")
    markers = [(agent, actor, p.search(message).group(0)) for p, agent, actor in MARKERS if p.search(message)]
    for _agent, _actor, text in markers:
        evidence.append(f"marker: {text!r} in the message")

    ai_actors = list(dict.fromkeys([a.actor] * (a.kind == AI) + [v.actor for v in ai_cos]))
    agent = a.agent if a.kind == AI else None
    # the tool, when the commit names one: a marker ("Generated with Claude Code") says more than a model's name
    agent = agent or (markers[0][0] if markers else None) or next((v.agent for v in ai_cos if v.agent), None)

    if a.kind == SYSTEM:
        return Attribution(SYSTEM, a.actor, a.actor, a.rule, tuple(evidence), agent=a.agent)
    if a.kind == AI:
        if human_cos:
            return Attribution(MIXED, human_cos[0].actor, a.actor, "agent-author-human-co-author", tuple(evidence),
                               human=human_cos[0].actor, ai=tuple(ai_actors), agent=agent)
        return Attribution(AI, a.actor, a.actor, a.rule, tuple(evidence), ai=tuple(ai_actors), agent=agent)

    # A person is the author.
    human = a.actor
    if a.rule == "person" and author.name.endswith(_AIDER_SUFFIX):
        human = person_actor(Identity(author.name[: -len(_AIDER_SUFFIX)], author.email))
        evidence[0] = f"author: {author}: aider marks the author name of the changes it wrote with '{_AIDER_SUFFIX.strip()}'"
        if not ai_actors:
            ai_actors = ["ai:aider"]
        agent = agent or "aider"
        return Attribution(MIXED, human, ai_actors[0], "aider-author", tuple(evidence),
                           human=human, ai=tuple(ai_actors), agent=agent)
    if ai_cos:
        return Attribution(MIXED, human, ai_cos[0].actor, "co-author-ai", tuple(evidence),
                           human=human, ai=tuple(ai_actors), agent=agent)
    if markers:
        actor = markers[0][1]
        return Attribution(MIXED, human, actor, "marker", tuple(evidence), human=human, ai=(actor,), agent=agent)
    return Attribution(HUMAN, human, human, a.rule, tuple(evidence))


__all__ = [
    "AI", "HUMAN", "KNOWN", "MARKERS", "MIXED", "SYSTEM", "Attribution", "Identity", "Known", "Mapping",
    "Verdict", "attribute_commit", "classify", "co_authors", "load_mapping", "model_slug", "person_actor",
]
