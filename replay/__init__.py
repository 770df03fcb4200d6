"""The replay layer: time travel, materialize, re-execute, branch (docs/replay.md).

    replay.timetravel   as_of(store, seq): the projections as the store stood after an event
    replay.materialize  checkout(store, node, dir): rebuild a node's code tree, every hash checked
    replay.rerun        rerun(store, node): run its recorded commands in a sandbox, compare scores
    replay.branch       create_branch, list_branches, compare
    replay.cli          the `lineage` subcommands (entry point lineage.commands)

Built on ``lineage`` and ``schemas``; nothing below imports it.
"""
