"""Coding agents and self-improving agents as lineages.

- ``attribution``: who made a commit (human, AI agent, automation), each decision with
  its rule and evidence; a user mapping file overrides or extends the built-in rules.
- ``gitlog``: a git history imported as a lineage, one node per commit.
- ``workspace``: an agent's workspace (skills, memory, instruction files) watched live,
  or imported from git or a folder of dated snapshots, one node per burst of changes.
- ``correction``: re-attributing a node by a new event, never by editing an old one.
"""

from lineage.agents.attribution import (
    Attribution,
    Identity,
    Mapping,
    attribute_commit,
    load_mapping,
)
from lineage.agents.gitlog import import_git

__all__ = ["Attribution", "Identity", "Mapping", "attribute_commit", "import_git", "load_mapping"]
