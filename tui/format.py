"""How values look on screen: node labels, badges, percentages, bars. Pure functions."""

from __future__ import annotations

from rich.text import Text

from lineage.service import NodeRow

ACTOR_STYLE = {"human": "green", "ai": "magenta", "system": "blue"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
SEVERITY_BY_RANK = {3: "critical", 2: "warning", 1: "info"}
INTEGRITY_STYLE = {"ok": "green", "modified": "bold red", "missing": "bold red", "unchecked": "yellow", "no-hash": "dim"}
OUTCOME_STYLE = {"reproduced": "bold green", "drifted": "bold yellow", "failed": "bold red"}
LEVEL_STYLE = {0: "green", 1: "cyan", 2: "yellow", 3: "magenta"}
SIGNAL_SHORT = {
    "self_evaluation": "self-eval",
    "evaluator_touched": "eval-touched",
    "contamination": "contaminated",
    "unreviewed_promotion": "unreviewed",
    "heldout_gap": "heldout-gap",
    "suspicious_jump": "jump",
}
BARS = " ▏▎▍▌▋▊▉█"


def pct(share: float | None) -> str:
    return "–" if share is None else f"{round(float(share) * 100):d}"


def number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def level_text(level: int | None) -> str:
    return "L?" if level is None else f"L{level}"


def badge(row: NodeRow) -> Text:
    """``H20 A70 S10 L2``: shares of the node's events by actor kind, and its autonomy level."""
    text = Text()
    if not row.events:
        return text
    text.append(f"H{pct(row.share('human'))}", ACTOR_STYLE["human"])
    text.append(f" A{pct(row.share('ai'))}", ACTOR_STYLE["ai"])
    text.append(f" S{pct(row.share('system'))}", ACTOR_STYLE["system"])
    text.append(f" {level_text(row.level)}", LEVEL_STYLE.get(row.level, "dim"))
    return text


def node_label(row: NodeRow, *, best: bool = False, link: bool = False, chain: bool = False) -> Text:
    """One tree line: id, generation, best score, involvement badge, marks, then the label
    (free text goes last, so a narrow pane cuts the label, not the numbers)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if link:
        text.append("↪ ", "magenta")
    text.append(row.node, "bold" if not link else "italic")
    if row.created_seq is None:
        text.append(" (no node_created)", "red")
    text.append(f" g{row.generation}", "cyan")
    if row.best is not None:
        text.append(f" {number(row.best)}", "bold green" if best else "green")
    if row.events:
        text.append(" ")
        text.append_text(badge(row))
    if best:
        text.append(" ★", "bold yellow")
    if row.other_parents:
        text.append(f" ⑂{len(row.other_parents)}", "magenta")
    if row.missing_parent:
        text.append(" ✗parent", "red")
    if row.signals:
        style = SEVERITY_STYLE[SEVERITY_BY_RANK.get(row.severity, "info")]
        text.append(f" ⚠{len(row.signals)}", style)
    if chain:
        text.append(" ↓", "dim")
    if row.branch and row.branch != "main":
        text.append(f" [{row.branch}]", "italic")
    if row.label and row.label != row.node:
        text.append(f"  {row.label}", "dim")
    return text


def bar(value: float | None, lo: float, hi: float, width: int) -> str:
    """A horizontal bar of ``width`` cells for ``value`` on the scale lo..hi (eighths of a cell)."""
    if value is None or width <= 0:
        return ""
    span = hi - lo
    frac = 1.0 if span <= 0 else max(0.0, min(1.0, (value - lo) / span))
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (BARS[part] if part else "")


def short_id(event_id: str | None) -> str:
    return event_id[:8] if event_id else ""
