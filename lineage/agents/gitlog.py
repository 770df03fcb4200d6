"""A git history as a lineage: every commit a node, attributed to a person, an agent or a bot.

The repository is read by one streaming ``git log -p`` (plus ``git cat-file --batch`` for
the contents of binary files), which is what makes 10,000 commits import in seconds: the
git command is the maintained reader, and nothing is parsed twice.

Per commit (node id = the full commit sha, parents = the commit's parents):

- ``node_created``: parents, subject as label, author and committer identities and times;
- ``proposal``: the message (the idea); a message that is not UTF-8 is kept whole as
  ``message_b64`` next to a replacement-decoded ``idea``;
- ``code_diff``: the diff against the first parent (a root against the empty tree), the
  text in the object store, per-file stats, renames (``old_path``), binary files (their
  new content stored as an object, like the SDK does); merges are flagged ``merge: true``
  (their diff repeats work already counted in the merged commits); an empty commit has
  none;
- ``selection``: for a merge, each merged parent chosen (purpose ``parent``).

``occurred_at`` is the author time; the committer time is in the payloads. Every event
carries ``attribution`` (actor, rule, evidence; see ``lineage.agents.attribution``).
Event ids are derived from (lineage, commit, role), so a re-import adds nothing.
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.agents.attribution import (
    Identity,
    Mapping,
    attribute_commit,
    load_mapping,
)
from lineage.agents.ids import stable_event_id
from lineage.errors import LineageError
from lineage.store import Store
from schemas import Draft, prepare
from schemas.envelope import DEFAULT_BRANCH

Progress = Callable[[int, int], None]

_MARK = b"\x00\x1eLINEAGE\x1f"
_FORMAT = "%x00%x1eLINEAGE%x1f" + "%x00".join(
    ["%H", "%P", "%T", "%aN", "%aE", "%at", "%aI", "%cN", "%cE", "%ct", "%cI", "%B"]) + "%x00"
_NULL_BLOB = "0" * 40
MAX_FILES_INLINE = 2000  # beyond this, per-file records stay in the diff object only
MAX_IDEA_CHARS = 100_000
ID_NAMESPACE = "lineage-git/1"

# Settings that would change git's output format are pinned, whatever the user's config.
_GIT_CONFIG = [
    "-c", "core.quotePath=false", "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false",
    "-c", "diff.relative=false", "-c", "diff.external=", "-c", "log.showSignature=false",
    "-c", "color.ui=never", "-c", "diff.submodule=short", "-c", "i18n.logOutputEncoding=UTF-8",
    "-c", "diff.renames=true", "-c", "diff.srcPrefix=a/", "-c", "diff.dstPrefix=b/",
]


@dataclass(frozen=True, slots=True)
class RawCommit:
    sha: str
    parents: list[str]
    tree: str
    author: tuple[bytes, bytes]
    author_time: int
    author_date: str
    committer: tuple[bytes, bytes]
    committer_time: int
    committer_date: str
    message: bytes
    patch: bytes


# -- running git ---------------------------------------------------------------------


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *_GIT_CONFIG, *args], input=input,
                              capture_output=True, check=False)
    except FileNotFoundError:
        raise LineageError("the git command is not installed; install git to import repositories") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise LineageError(f"git {args[0]} in {repo}: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc.stdout


def repo_root(path: str | os.PathLike) -> Path:
    """The top directory of the git repository at ``path``; a clear error if it is none."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise LineageError(f"{p} does not exist")
    try:
        out = _git(p, "rev-parse", "--show-toplevel")
    except LineageError:
        raise LineageError(f"{p} is not a git repository (git rev-parse found none)") from None
    return Path(out.decode().strip())


def is_git_repo(path: str | os.PathLike) -> bool:
    try:
        return repo_root(path) == Path(path).expanduser().resolve()
    except LineageError:
        return False


def _revs(rev: str | Sequence[str] | None) -> list[str]:
    if rev is None:
        return ["HEAD"]
    revs = shlex.split(rev) if isinstance(rev, str) else list(rev)
    allowed = {"--all", "--branches", "--tags", "--remotes", "--first-parent", "--no-merges"}
    for r in revs:
        if r.startswith("-") and r not in allowed:
            raise LineageError(f"--rev {r!r}: only revisions, ranges (A..B) and {', '.join(sorted(allowed))} are accepted")
    return revs or ["HEAD"]


def count_commits(repo: Path, revs: list[str]) -> int:
    opts = [r for r in revs if r in ("--first-parent", "--no-merges")]
    rest = [r for r in revs if r not in opts]
    return int(_git(repo, "rev-list", "--count", *opts, *rest, "--").decode().strip() or 0)


def iter_commits(repo: Path, revs: list[str]) -> Iterator[RawCommit]:
    """Commits in topological order, parents first, each with its patch against its first parent."""
    args = ["git", "-C", str(repo), *_GIT_CONFIG, "log", "--no-color", "--no-ext-diff", "--no-textconv",
            "--topo-order", "--reverse", "--root", "-p", "--full-index", "-M", "--diff-merges=first-parent",
            "--encoding=UTF-8", f"--format={_FORMAT}", *revs, "--"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    buf = bytearray()
    scan = 0  # where the next marker can start: a huge patch is searched once, not once a chunk
    try:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            buf += chunk
            start = 0
            while (i := buf.find(_MARK, scan)) >= 0:
                if i > start:
                    yield _parse_record(bytes(buf[start:i]))
                start = scan = i + len(_MARK)
            del buf[:start]
            scan = max(0, len(buf) - len(_MARK) + 1)
        if buf:
            yield _parse_record(bytes(buf))
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read() if proc.stderr else b""
        code = proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    if code != 0:
        msg = err.decode("utf-8", "replace").strip().splitlines()
        raise LineageError(f"git log in {repo}: {msg[-1] if msg else f'exit {code}'}")


def _parse_record(rec: bytes) -> RawCommit:
    f = rec.split(b"\x00", 12)
    if len(f) < 13:
        raise LineageError(f"unexpected git log output near {rec[:80]!r}")
    patch = f[12]
    i = patch.find(b"diff --git ")
    patch = patch[i:] if i >= 0 else b""
    return RawCommit(
        sha=f[0].decode(), parents=f[1].decode().split(), tree=f[2].decode(),
        author=(f[3], f[4]), author_time=int(f[5] or 0), author_date=f[6].decode(),
        committer=(f[7], f[8]), committer_time=int(f[9] or 0), committer_date=f[10].decode(),
        message=f[11], patch=patch,
    )


class BlobReader:
    """Contents of git blobs through one long-lived ``git cat-file --batch``."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._proc: subprocess.Popen | None = None

    def read(self, sha: str) -> bytes | None:
        if self._proc is None:
            self._proc = subprocess.Popen(["git", "-C", str(self.repo), "cat-file", "--batch"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(sha.encode() + b"\n")
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().split()
        if len(header) < 3 or header[1] == b"missing":
            return None
        size = int(header[2])
        data = self._proc.stdout.read(size)
        self._proc.stdout.read(1)  # the LF after the contents
        return data

    def close(self) -> None:
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream:
                    stream.close()
            self._proc.wait()
            self._proc = None


# -- parsing patches -----------------------------------------------------------------

_ESCAPES = {ord("a"): 7, ord("b"): 8, ord("t"): 9, ord("n"): 10, ord("v"): 11, ord("f"): 12,
            ord("r"): 13, ord('"'): 34, ord("\\"): 92}


def _unquote(b: bytes) -> bytes:
    """A path as git writes it: C-quoted (``"a/x\\ty"``) when it holds special characters."""
    if len(b) < 2 or not b.startswith(b'"') or not b.endswith(b'"'):
        return b
    out, i, s = bytearray(), 0, b[1:-1]
    while i < len(s):
        c = s[i]
        if c == 92 and i + 1 < len(s):
            n = s[i + 1]
            if len(s) >= i + 4 and all(48 <= x <= 55 for x in s[i + 1:i + 4]):
                out.append(int(s[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _split_git_line(rest: bytes) -> tuple[bytes, bytes]:
    """The two paths of ``diff --git a/X b/Y``; unambiguous when quoted or equal."""
    if rest.startswith(b'"'):
        end = 1
        while end < len(rest):
            if rest[end] == 92:
                end += 2
                continue
            if rest[end] == 34:
                break
            end += 1
        a, b = rest[:end + 1], rest[end + 2:]
        return _unquote(a), _unquote(b)
    if rest.endswith(b'"'):
        start = rest.rfind(b' "')
        return rest[:start], _unquote(rest[start + 1:])
    n = (len(rest) - 1) // 2
    if len(rest) % 2 == 1 and rest[n:n + 1] == b" " and rest[2:n] == rest[n + 3:]:
        return rest[:n], rest[n + 1:]
    i = rest.find(b" b/")
    return (rest[:i], rest[i + 1:]) if i >= 0 else (rest, rest)


def _strip_prefix(p: bytes, prefix: bytes) -> bytes:
    return p[len(prefix):] if p.startswith(prefix) else p


def _text(b: bytes) -> tuple[str, str | None]:
    """UTF-8 text, or (replacement-decoded text, base64 of the exact bytes)."""
    try:
        return b.decode("utf-8"), None
    except UnicodeDecodeError:
        return b.decode("utf-8", "replace"), base64.b64encode(b).decode()


def parse_patch(patch: bytes) -> list[dict[str, Any]]:
    """Per-file change records of a git patch (``git log -p --full-index -M``).

    Counts are taken hunk by hunk, so a removed line that starts with ``--`` is not
    mistaken for a file header. Each record has path, change, lines added and removed,
    and where git says so: old_path (renames), old_mode/new_mode, blob (the new blob id),
    and for binary files ``added``/``deleted``.
    """
    files: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    in_hunk = False
    for line in patch.split(b"\n"):
        if line.startswith(b"diff --git "):
            cur = {"_git": line[11:], "lines_added": 0, "lines_removed": 0}
            files.append(cur)
            in_hunk = False
            continue
        if cur is None:
            continue
        if in_hunk:
            c = line[:1]
            if c == b"+":
                cur["lines_added"] += 1
            elif c == b"-":
                cur["lines_removed"] += 1
            continue
        if line.startswith(b"@@"):
            in_hunk = True
        elif line.startswith(b"--- "):
            cur["_minus"] = _unquote(line[4:])
        elif line.startswith(b"+++ "):
            cur["_plus"] = _unquote(line[4:])
        elif line.startswith(b"rename from "):
            cur["_from"] = _unquote(line[12:])
        elif line.startswith(b"rename to "):
            cur["_to"] = _unquote(line[10:])
        elif line.startswith(b"new file mode "):
            cur["_new"] = True
            cur["new_mode"] = line[14:].decode()
        elif line.startswith(b"deleted file mode "):
            cur["_deleted"] = True
            cur["old_mode"] = line[18:].decode()
        elif line.startswith(b"old mode "):
            cur["old_mode"] = line[9:].decode()
        elif line.startswith(b"new mode "):
            cur["new_mode"] = line[9:].decode()
        elif line.startswith(b"similarity index "):
            cur["similarity"] = int(line[17:].rstrip(b"%") or 0)
        elif line.startswith(b"index "):
            blobs = line[6:].split(b" ", 1)[0].split(b"..")
            if len(blobs) == 2:
                cur["_old_blob"], cur["_new_blob"] = blobs[0].decode(), blobs[1].decode()
        elif line.startswith((b"Binary files ", b"GIT binary patch")):
            cur["_binary"] = True
    return [_file_record(f) for f in files]


def _file_record(f: dict[str, Any]) -> dict[str, Any]:
    a, b = _split_git_line(f.pop("_git"))
    old, new = _strip_prefix(a, b"a/"), _strip_prefix(b, b"b/")
    if "_from" in f:
        old = f.pop("_from")
    if "_to" in f:
        new = f.pop("_to")
    plus, minus = f.pop("_plus", None), f.pop("_minus", None)
    if plus is not None and plus != b"/dev/null":
        new = _strip_prefix(plus, b"b/")
    if minus is not None and minus != b"/dev/null":
        old = _strip_prefix(minus, b"a/")
    added, deleted = f.pop("_new", False), f.pop("_deleted", False)
    path_b = old if deleted else new
    path, path_raw = _text(path_b)
    rec: dict[str, Any] = {"path": path}
    if path_raw:
        rec["path_b64"] = path_raw
    renamed = old != new and not added and not deleted
    if renamed:
        rec["old_path"] = _text(old)[0]
    if f.pop("_binary", False):
        rec["change"] = "binary"
        if added:
            rec["added"] = True
        if deleted:
            rec["deleted"] = True
    else:
        rec["change"] = "added" if added else "deleted" if deleted else "renamed" if renamed else "modified"
    new_blob = f.pop("_new_blob", None)
    f.pop("_old_blob", None)
    if new_blob and new_blob != _NULL_BLOB:
        rec["blob"] = new_blob
    rec.update(f)
    return rec


# -- importing -----------------------------------------------------------------------


def _identity(pair: tuple[bytes, bytes]) -> tuple[Identity, dict[str, str]]:
    name, name_raw = _text(pair[0])
    email, email_raw = _text(pair[1])
    extra = {}
    if name_raw or email_raw:
        extra["raw_b64"] = base64.b64encode(pair[0] + b" <" + pair[1] + b">").decode()
    return Identity(name, email), extra


def _subject(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return " ".join(line.split())[:200]
    return ""


class GitImport:
    """One import run. Use ``import_git``; this class holds the state between batches."""

    def __init__(self, store: Store, repo: Path, *, lineage: str, mapping: Mapping | None,
                 default_actor: str | None, branch: str = DEFAULT_BRANCH, source: str = "git"):
        self.store = store
        self.repo = repo
        self.lineage = lineage
        self.mapping = mapping
        self.default_actor = default_actor
        self.branch = branch
        self.source = source
        self.blobs = BlobReader(repo)
        self.counts: dict[str, int] = {"human": 0, "ai": 0, "mixed": 0, "system": 0}
        self.models: dict[str, int] = {}

    def put(self, data: bytes) -> str:
        """Store an object; it is made durable by ``wait_objects()`` before events name it."""
        return self.store.objects.put(data, durable=False)

    def wait_objects(self) -> None:
        self.store.objects.sync()

    def _id(self, occurred_us: int, sha: str, role: str) -> str:
        return stable_event_id(occurred_us, ID_NAMESPACE, self.lineage, sha, role)

    def drafts(self, c: RawCommit) -> list[Draft]:
        author, author_extra = _identity(c.author)
        committer, committer_extra = _identity(c.committer)
        message, message_raw = _text(c.message)
        att = attribute_commit(author, message, self.mapping, default_actor=self.default_actor)
        self.counts[att.involvement] += 1
        for a in att.ai:
            self.models[a] = self.models.get(a, 0) + 1
        us = c.author_time * 1_000_000
        subject = _subject(message)
        common = {"commit": c.sha}

        def draft(kind: str, role: str, actor: str, payload: dict[str, Any]) -> Draft:
            return Draft(lineage=self.lineage, branch=self.branch, kind=kind, actor=actor, node=c.sha,
                         occurred_at=c.author_time,
                         event_id=self._id(us, c.sha, role),
                         payload={**payload, **common, "attribution": att.payload(actor)})

        node_payload: dict[str, Any] = {
            "parents": c.parents, "source": self.source, "git_tree": c.tree,
            "author": str(author), "author_date": c.author_date,
            "committer": str(committer), "committer_date": c.committer_date,
        }
        if subject:
            node_payload["label"] = subject
        if author_extra:
            node_payload["author_raw_b64"] = author_extra["raw_b64"]
        if committer_extra:
            node_payload["committer_raw_b64"] = committer_extra["raw_b64"]
        out = [draft("node_created", "node", att.lead, node_payload)]

        idea = message.strip() or "(empty commit message)"
        proposal: dict[str, Any] = {"idea": idea[:MAX_IDEA_CHARS]}
        if len(idea) > MAX_IDEA_CHARS:
            proposal["message_object"] = self.put(c.message)
        if message_raw:
            proposal["message_b64"] = message_raw
            proposal["message_encoding"] = "not UTF-8: idea is decoded with replacement characters, message_b64 holds the exact bytes"
        out.append(draft("proposal", "proposal", att.lead, proposal))

        if c.patch:
            out.append(draft("code_diff", "code_diff", att.implementer, self._code_diff(c)))
        for i, parent in enumerate(c.parents[1:], start=1):
            out.append(draft("selection", f"selection:{i}", att.lead, {
                "node": parent, "purpose": "parent",
                "reason": f"merged into {c.sha[:12]}" + (f": {subject}" if subject else ""),
            }))
        return out

    def _code_diff(self, c: RawCommit) -> dict[str, Any]:
        files = parse_patch(c.patch)
        for f in files:
            if f["change"] == "binary" and not f.get("deleted") and f.get("blob"):
                data = self.blobs.read(f["blob"])
                if data is not None:
                    f["object"] = self.put(data)
        payload: dict[str, Any] = {
            "diff_object": self.put(c.patch),
            "lines_added": sum(f["lines_added"] for f in files),
            "lines_removed": sum(f["lines_removed"] for f in files),
            "base": c.parents[0] if c.parents else None,
            "git_tree": c.tree,
            "committer_date": c.committer_date,
        }
        if payload["base"] is None:
            del payload["base"]
        if len(c.parents) > 1:
            payload["merge"] = True
        if len(files) > MAX_FILES_INLINE:
            payload["files_total"] = len(files)
            files = files[:MAX_FILES_INLINE]
        payload["files"] = files
        payload["paths"] = [f["path"] for f in files]
        return payload

    def close(self) -> None:
        self.blobs.close()


def import_git(
    store: Store,
    repo: str | os.PathLike,
    *,
    rev: str | Sequence[str] | None = None,
    lineage: str | None = None,
    mapping: str | os.PathLike | Mapping | dict | None = None,
    progress: Progress | None = None,
    default_actor: str | None = None,
    batch_size: int = 1000,
    source: str = "git",
) -> dict[str, Any]:
    """Import a git history into ``store`` as lineage ``lineage`` (default: the repository's
    directory name). Returns a summary: commits, events added, involvement counts, models.

    ``rev``: what to import, as for ``git log`` (default ``HEAD``; ``--all``, ``v1..main``).
    ``mapping``: identity -> actor overrides (a TOML/JSON file or a dict).
    ``default_actor``: the actor of authors no rule recognises, instead of ``human:<name>``.
    Re-importing adds only commits not imported before.
    """
    start = time.perf_counter()
    root = repo_root(repo)
    revs = _revs(rev)
    if rev is None and not _git_ok(root, "rev-parse", "--verify", "-q", "HEAD"):
        raise LineageError(f"{root} has no commits yet; nothing to import")
    lineage = lineage or root.name
    total = count_commits(root, revs)
    run = GitImport(store, root, lineage=lineage, mapping=load_mapping(mapping),
                    default_actor=default_actor, source=source)
    done = 0
    by_kind: dict[str, int] = {}
    seen = 0

    def append(w, batch: list) -> None:
        nonlocal seen
        run.wait_objects()  # every object an event names is on disk before the event
        acks = {a.event_id for a in w.append_many(batch, skip_existing=True)}
        seen += len(batch)
        for e in batch:
            if e.event_id in acks:
                by_kind[e.kind] = by_kind.get(e.kind, 0) + 1

    try:
        with store.writer(max_hold=2.0) as w:
            batch: list = []
            for commit in iter_commits(root, revs):
                batch.extend(prepare(d) for d in run.drafts(commit))
                done += 1
                if done % batch_size == 0:
                    append(w, batch)
                    batch = []
                    if progress:
                        progress(done, total)
            append(w, batch)
    finally:
        run.close()
    if progress:
        progress(done, total)
    return {
        "lineage": lineage, "repository": str(root), "commits": done, "events_added": sum(by_kind.values()),
        "events_skipped": seen - sum(by_kind.values()), "by_kind": by_kind,
        **{f"{k}_commits": v for k, v in run.counts.items()},
        "models": dict(sorted(run.models.items(), key=lambda kv: -kv[1])),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _git_ok(repo: Path, *args: str) -> bool:
    try:
        _git(repo, *args)
        return True
    except LineageError:
        return False


__all__ = ["BlobReader", "GitImport", "RawCommit", "import_git", "is_git_repo", "iter_commits", "parse_patch", "repo_root"]
