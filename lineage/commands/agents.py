"""Coding agents and self-improving agents: import-git, import-workspace, watch-workspace, attribute."""

from __future__ import annotations

import json
import signal
import threading

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from lineage.commands._common import console, err_console, store_option
from lineage.store import Store, resolve_store_path

_IMPORT_HELP_RULES = """\b
Attribution, per commit, with the rule and evidence stored on every event:
  agent author (openhands, copilot-swe-agent[bot], devin-ai-integration[bot], claude[bot]) -> ai:
  human author + AI Co-authored-by trailer (Claude Opus 4.5 <noreply@anthropic.com>) -> mixed:
      node and proposal by the person, code_diff by ai:<model>
  "Generated with Claude Code" and similar markers -> mixed (ai:claude-code)
  dependabot, renovate, pre-commit-ci, other GitHub Apps -> system:
  identities match whole (email or bot account), never by substring
  --mapping FILE (TOML or JSON, identity = "actor") overrides or extends the rules"""


def register(cli: click.Group) -> None:
    cli.add_command(import_git_cmd)
    cli.add_command(import_workspace_cmd)
    cli.add_command(watch_workspace_cmd)
    cli.add_command(attribute_cmd)


def _store(store_dir: str | None) -> Store:
    store = Store(resolve_store_path(store_dir))
    return store if store.exists() else Store.init(store.root)


def _check_actor(value: str | None, name: str, kinds: tuple[str, ...] = ("human", "ai", "system")) -> None:
    if value is None:
        return
    from schemas.actor import parse_actor

    kind, _ = parse_actor(value, field=name)
    if kind.value not in kinds:
        raise click.BadParameter(f"expected {' or '.join(k + ':<name>' for k in kinds)}, got {value!r}", param_hint=name)


def _progress_bar(description: str, disable: bool):
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True, disable=disable)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "—"
        console.print(f"  {key:<16} {value}")


@click.command("import-git", epilog=_IMPORT_HELP_RULES)
@click.argument("repo", type=click.Path(exists=True, file_okay=False))
@click.option("--rev", default=None, help="What to import, as for git log: HEAD (default), --all, v1.0..main.")
@click.option("--lineage", "lineage_name", default=None, help="Lineage name (default: the repository's folder name).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML or JSON file of identity = actor, overriding or extending the built-in rules.")
@click.option("--default-actor", default=None,
              help="Actor for authors no rule or mapping recognises (default: human:<author name>).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_option
def import_git_cmd(repo, rev, lineage_name, mapping, default_actor, as_json, store_dir) -> None:
    """Import a git repository: every commit a node, attributed to people, AI agents or bots.

    Re-importing adds only new commits. The store is created if it does not exist.
    """
    from lineage.agents.gitlog import import_git

    _check_actor(default_actor, "--default-actor")
    store = _store(store_dir)
    with _progress_bar("importing commits", as_json) as bar:
        task = bar.add_task("importing commits", total=None)
        summary = import_git(store, repo, rev=rev, lineage=lineage_name, mapping=mapping, default_actor=default_actor,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    if not as_json:
        console.print(f"imported [bold]{summary['commits']}[/] commits of {summary['repository']} "
                      f"into lineage [cyan]{summary['lineage']}[/] ({summary['seconds']}s)")
    _print_summary(summary, as_json)


@click.command("import-workspace")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--actor", default=None, help="The agent that changed the workspace (ai:NAME). Required for a folder "
              "of snapshots; for a git repository, the actor of authors no rule recognises.")
@click.option("--baseline-actor", default="system:lineage", show_default=True,
              help="Actor of the first snapshot (its author is usually unknown).")
@click.option("--lineage", "lineage_name", default=None, help="Lineage name (default: the folder's name).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), default=None,
              help="For a git workspace: identity = actor overrides (TOML or JSON).")
@click.option("--rev", default=None, help="For a git workspace: what to import (default HEAD).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_option
def import_workspace_cmd(directory, actor, baseline_actor, lineage_name, mapping, rev, as_json, store_dir) -> None:
    """Import an agent workspace's history: a git repository, or a folder of dated snapshots.

    \b
    Snapshots are sub-folders, one per state, ordered by the date in their names
    (2025-01-03, 2025-01-03T14-12, 20250103-1412), else by name. The first becomes the
    baseline node; each later one a node whose parent is the one before, with the diff.
    """
    from lineage.agents.workspace import import_workspace

    _check_actor(actor, "--actor")
    _check_actor(baseline_actor, "--baseline-actor")
    store = _store(store_dir)
    with _progress_bar("importing workspace", as_json) as bar:
        task = bar.add_task("importing workspace", total=None)
        summary = import_workspace(store, directory, actor=actor, lineage=lineage_name, mapping=mapping,
                                   baseline_actor=baseline_actor, rev=rev,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    if not as_json:
        console.print(f"imported workspace {summary.get('workspace') or summary.get('repository')} "
                      f"({summary['kind']}) into lineage [cyan]{summary['lineage']}[/]")
    _print_summary(summary, as_json)


@click.command("watch-workspace")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--actor", required=True, help="The agent whose changes these are (ai:NAME).")
@click.option("--lineage", "lineage_name", default=None, help="Lineage name (default: the folder's name).")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only these files (repeatable), e.g. 'skills/*/SKILL.md' 'MEMORY.md' 'AGENTS.md'. Default: all.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Never these files (repeatable).")
@click.option("--quiet", type=float, default=1.0, show_default=True,
              help="Seconds without changes that end a burst (one node per burst).")
@click.option("--max-burst", type=float, default=30.0, show_default=True,
              help="Longest burst in seconds; a longer run of changes is split.")
@click.option("--baseline-actor", default="system:lineage", show_default=True,
              help="Actor of the files as found when watching starts, and of changes made while nobody watched.")
@store_option
def watch_workspace_cmd(directory, actor, lineage_name, include, exclude, quiet, max_burst, baseline_actor, store_dir) -> None:
    """Watch an agent's workspace; each burst of changes becomes a node by the agent.

    \b
    The node's parent is the previous state; its code_diff is exactly what changed,
    with a snapshot so replay can rebuild it. Stop with Ctrl-C; watching again resumes
    from the last recorded state. Correct a node later with `lineage attribute`.
    """
    from lineage.agents.workspace import WorkspaceWatcher

    _check_actor(actor, "--actor")
    _check_actor(baseline_actor, "--baseline-actor")
    store = _store(store_dir)

    def show(node: str, payload: dict) -> None:
        files = payload.get("files") or []
        added = sum(f["lines_added"] for f in files)
        removed = sum(f["lines_removed"] for f in files)
        who = payload["attribution"]["actor"]
        console.print(f"[cyan]{node}[/] {who}: {payload.get('label', '')} [dim](+{added} -{removed})[/]")

    watcher = WorkspaceWatcher(store, directory, actor=actor, lineage=lineage_name, include=include, exclude=exclude,
                               quiet=quiet, max_burst=max_burst, baseline_actor=baseline_actor, on_node=show)
    console.print(f"watching [bold]{watcher.root}[/] as {actor} into lineage [cyan]{watcher.lineage}[/] "
                  f"(store {store.root}); Ctrl-C to stop")
    stop = threading.Event()

    def on_signal(signum, frame) -> None:  # Ctrl-C or a service manager: finish the burst in hand, then stop
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(f"stopped; {len(watcher.nodes)} node(s) recorded")


@click.command("attribute")
@click.argument("node")
@click.argument("actor")
@click.option("--lineage", "lineage_name", default=None, help="Needed only if several lineages have this node.")
@click.option("--kind", "kinds", multiple=True,
              type=click.Choice(["node_created", "proposal", "code_diff", "selection", "review", "run", "score", "annotation"]),
              help="Re-attribute only these kinds (repeatable). Default: node_created, proposal, code_diff, selection.")
@click.option("--by", default=None, help="Who makes the correction (default: human:$USER).")
@click.option("--reason", default=None, help="Why, kept with the correction.")
@store_option
def attribute_cmd(node, actor, lineage_name, kinds, by, reason, store_dir) -> None:
    """Correct who made NODE: ACTOR (human:NAME, ai:MODEL, system:TOOL) made it.

    Recorded as a new annotation (topic attribution) listing the events it re-attributes;
    the old events are never edited. NODE may be a unique prefix (a short commit sha).
    """
    from lineage.agents.correction import attribute_node
    from lineage.commands._common import open_store

    _check_actor(actor, "ACTOR")
    _check_actor(by, "--by")
    store = open_store(store_dir)
    result = attribute_node(store, node, actor, lineage=lineage_name, kinds=kinds or None, by=by, reason=reason)
    console.print(f"recorded seq {result['seq']} annotation {result['event_id']}: node [cyan]{result['node']}[/] "
                  f"is now attributed to {actor} (by {result['by']})")
    for event_id, was in result["events"].items():
        console.print(f"  {event_id}  was {was}")
