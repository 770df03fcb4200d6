"""Adapters so ``lineage import git PATH`` and ``lineage import workspace PATH`` can run these
importers through ``lineage.importers`` (one module per format: ``FORMAT``,
``DESCRIPTION``, ``count_records(path)``, ``run(session, path, lineage=, actors=)``).

Register them in ``lineage.importers._MODULES``::

    "git": "lineage.agents.formats.git",
    "workspace": "lineage.agents.formats.workspace",

They share ids with ``lineage import-git`` / ``import-workspace``, so importing a source
both ways adds it once. ``actors.ai`` is the actor of identities no rule recognises (git)
or of the changes between snapshots (workspace); the rules' other inputs (``--rev``,
``--mapping``) are options of ``import-git`` / ``import-workspace``.
"""
