"""``lineage import workspace DIR``: an agent workspace's history, from git or dated snapshots
(see ``lineage.agents.workspace``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineage.agents.formats._bridge import fill_summary, progress_for
from lineage.agents.gitlog import count_commits, is_git_repo, repo_root
from lineage.agents.workspace import import_workspace, list_snapshots
from lineage.errors import LineageError

FORMAT = "workspace"
DESCRIPTION = ("agent workspace (skills/*/SKILL.md, MEMORY.md, AGENTS.md): its git history, or a folder of "
               "dated snapshot folders (needs --ai-actor)")


def count_records(path: Path) -> int | None:
    try:
        if is_git_repo(path):
            return count_commits(repo_root(path), ["HEAD"])
        return len(list_snapshots(Path(path)))
    except (LineageError, OSError):
        return None


def run(session: Any, path: Path, *, lineage: str | None = None, actors: Any = None) -> None:
    summary = import_workspace(session.store, path, actor=getattr(actors, "ai", None), lineage=lineage,
                               progress=progress_for(session))
    fill_summary(session, summary, nodes=summary.get("commits", summary.get("nodes", 0)))
