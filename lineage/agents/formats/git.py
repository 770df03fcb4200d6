"""``lineage import git REPO``: a git history, one node per commit (see ``lineage.agents.gitlog``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineage.agents.formats._bridge import fill_summary, progress_for
from lineage.agents.gitlog import count_commits, import_git, repo_root
from lineage.errors import LineageError

FORMAT = "git"
DESCRIPTION = ("git repository: a node per commit, attributed to people, AI agents (author identities, "
               "Co-authored-by trailers, 'Generated with' markers) and bots")


def count_records(path: Path) -> int | None:
    try:
        return count_commits(repo_root(path), ["HEAD"])
    except LineageError:
        return None


def run(session: Any, path: Path, *, lineage: str | None = None, actors: Any = None) -> None:
    default_actor = getattr(actors, "ai", None)
    summary = import_git(session.store, path, lineage=lineage, default_actor=default_actor,
                         progress=progress_for(session))
    fill_summary(session, summary, nodes=summary["commits"])
