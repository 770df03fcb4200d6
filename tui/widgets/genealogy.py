"""The genealogy as a lazy tree: children load when a node is expanded, a page at a time.

A node hangs under its first parent; a further parent shows as ``⑂n`` on the node and as
a ``↪`` link under that parent, and selecting a link jumps to the node itself. A run of
only children is shown flat, one after another at the same depth (``↓``), so a line of
descent thirty generations long reads as a list instead of a staircase; indentation marks
where the line forks.

All loading happens in thread workers that post ``PageLoaded``; the tree keeps, per
lineage node id, the tree nodes showing it, so live changes, jumps and reloads find them
without walking the tree. A reload keeps the cursor and every expanded node by id.

A node with many children has their first page read as soon as the cursor rests on it
(``PREFETCH_REST``): expanding it then shows them without waiting for the query, and an
expand that comes while that read is under way waits for it rather than asking again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets._tree import TOGGLE_STYLE
from textual.widgets.tree import TreeNode

from lineage.service import Filter, LineageService, NodeRow, Opening, Page
from tui.format import node_label
from tui.workers import ReportsWorkerErrors

PREFETCH_CHILDREN = 100  # nodes with this many children have them read when the cursor rests
PREFETCH_REST = 0.03  # s: longer than between two moves of a held arrow key (so none are read then)
PREFETCH_FRESH = 3.0  # s a page read ahead is used for; after that, expanding reads it again


@dataclass
class Slot:
    """What a line of the tree stands for."""

    kind: str  # node | link | more | note
    row: NodeRow | None = None
    owner: str | None = None  # for `more`: the lineage node whose children continue
    offset: int = 0
    loaded: bool = False
    chain_member: bool = False  # its only child is shown right after it, at the same depth
    token: int = 0


@dataclass
class View:
    """Which part of the store the tree shows."""

    lineage: str | None = None
    branch: str | None = None
    flt: Filter = field(default_factory=Filter)


class GenealogyTree(ReportsWorkerErrors, Tree[Slot]):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("h", "collapse_or_parent", "Collapse / parent", show=False),
        Binding("l", "expand_or_child", "Expand", show=False),
        Binding("left", "collapse_or_parent", "Collapse / parent", show=False),
        Binding("right", "expand_or_child", "Expand", show=False),
    ]

    class PageLoaded(Message):
        def __init__(self, holder: TreeNode[Slot] | None, page: Page, token: int, epoch: int, replace: bool) -> None:
            self.holder = holder
            self.page = page
            self.token = token
            self.epoch = epoch
            self.replace = replace
            super().__init__()

    class ChildrenReadAhead(Message):
        def __init__(self, owner: str, page: Page | None, epoch: int) -> None:
            self.owner = owner
            self.page = page  # None: the read failed
            self.epoch = epoch
            super().__init__()

    class RowFocused(Message):
        """The cursor is on a lineage node (debounce before loading its detail)."""

        def __init__(self, row: NodeRow | None) -> None:
            self.row = row
            super().__init__()

    class Revealed(Message):
        def __init__(self, node: str, found: bool) -> None:
            self.node = node
            self.found = found
            super().__init__()

    def __init__(self, service: LineageService, **kwargs) -> None:
        super().__init__("genealogy", data=Slot("note"), **kwargs)
        self.service = service
        self.view = View()
        self.show_root = False
        self.guide_depth = 3
        self.auto_expand = False
        self.best_node: str | None = None
        self._epoch = 0
        self._shown: dict[str, list[TreeNode[Slot]]] = {}
        self._want_expanded: set[str] = set()
        self._want_cursor: str | None = None
        self._reveal: list[str] = []
        self._reveal_target: str | None = None
        self._open_first = False
        self._prefetched: dict[str | None, Page] = {}  # first pages read with the first screen
        self._ahead: tuple[str, Page, float] | None = None  # children read on a rest: (owner, page, when)
        self._reading_ahead: str | None = None  # whose children are being read ahead
        self._waiting: dict[str, TreeNode[Slot]] = {}  # expands waiting for that read
        self._rest_timer = None

    # Labels are drawn when a line is rendered (only the lines in view), not when a node
    # is added: a family of 1,000 children then costs 1,000 plain strings, not 1,000
    # styled labels. Tree also measures every shown line on each change; that uses the
    # plain text's length instead of rendering the label.

    def render_label(self, node: TreeNode[Slot], base_style, style) -> Text:
        slot = node.data
        if slot is not None and slot.row is not None and slot.kind in ("node", "link"):
            label = node_label(slot.row, link=True) if slot.kind == "link" else self._label(slot.row, slot.chain_member)
            label.stylize(style)
            if node._allow_expand:
                prefix = (self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE, base_style + TOGGLE_STYLE)
            else:
                prefix = ("", base_style)
            return Text.assemble(prefix, label)
        return super().render_label(node, base_style, style)

    def get_label_width(self, node: TreeNode[Slot]) -> int:
        slot = node.data
        if slot is not None and slot.row is not None:
            row = slot.row
            return len(row.node) + len(row.label or "") + 48
        return node._label.cell_len + 2

    # -- showing a lineage ----------------------------------------------------------------

    def show(self, view: View, *, keep_state: bool = False, opening: Opening | None = None) -> None:
        """Show a lineage (and branch) from its roots. ``keep_state``: re-expand what was
        expanded and put the cursor back where it was, by node id. ``opening``: the
        first screen's pages, already read (shown without a query)."""
        if keep_state:
            self._want_expanded = self.expanded_ids()
            current = self.current_row()
            self._want_cursor = current.node if current else None
        else:
            self._want_expanded = set()
            self._want_cursor = None
        self.view = view
        self._open_first = not keep_state and view.flt.empty
        self._epoch += 1
        self.clear()
        self._shown.clear()
        self.root.data = Slot("note", loaded=False)
        self._prefetched = {}
        self._ahead = None
        self._waiting.clear()
        self._reading_ahead = None
        if opening is not None and opening.lineage == view.lineage and view.branch is None and view.flt.empty:
            self._prefetched[None] = opening.roots
            if opening.expanded is not None and opening.children is not None:
                self._prefetched[opening.expanded.node] = opening.children
        if view.lineage is None:
            self.root.add_leaf(Text("no lineage in this store yet", style="dim"), Slot("note"))
            return
        self._load(self.root, offset=0, replace=True)

    def reload(self, holder: TreeNode[Slot]) -> None:
        """Load a shown node's children again (keeping what is expanded and the cursor)."""
        self._want_expanded |= self.expanded_ids()
        current = self.current_row()
        if current and self._want_cursor is None:
            self._want_cursor = current.node
        self._load(holder, offset=0, replace=True)

    def reload_all(self) -> None:
        self.show(self.view, keep_state=True)

    # -- loading ----------------------------------------------------------------------------

    def _load(self, holder: TreeNode[Slot], *, offset: int, replace: bool) -> None:
        slot = holder.data
        slot.token += 1
        owner = None if holder is self.root else (slot.row.node if slot.row else None)
        links = slot.row is not None and slot.row.links > 0
        page = self._prefetched.pop(owner, None) if offset == 0 else None
        if page is None and offset == 0 and self._ahead is not None and self._ahead[0] == owner:
            _owner, ahead, read_at = self._ahead
            self._ahead = None
            if time.monotonic() - read_at <= PREFETCH_FRESH:  # else the loop may have added children since
                page = ahead
        if page is not None:  # read ahead: shown in the same frame
            self._apply_page(holder, page, slot.token, self._epoch, replace)
            return
        if offset == 0 and replace and owner is not None and owner == self._reading_ahead:
            self._waiting[owner] = holder  # being read already: shown when it arrives
            return
        if self._rest_timer is not None:  # read now: not ahead as well
            self._rest_timer.stop()
            self._rest_timer = None
        self._fetch(holder, owner, offset, slot.token, self._epoch, replace, self.view, links)

    def _rest_on(self, tn: TreeNode[Slot]) -> None:
        """The cursor moved to ``tn``: once it rests there, read its children ahead."""
        if self._rest_timer is not None:
            self._rest_timer.stop()
            self._rest_timer = None
        slot = tn.data
        if (slot is None or slot.kind != "node" or slot.loaded or slot.row is None or not tn.allow_expand
                or slot.row.children < PREFETCH_CHILDREN):
            return
        owner = slot.row.node
        if owner in self._prefetched or owner == self._reading_ahead or (self._ahead and self._ahead[0] == owner):
            return
        self._rest_timer = self.set_timer(PREFETCH_REST, lambda: self._start_reading_ahead(tn, owner))

    def _start_reading_ahead(self, tn: TreeNode[Slot], owner: str) -> None:
        self._rest_timer = None
        if self.cursor_node is not tn or tn.data.loaded or self._reading_ahead is not None:
            return
        self._reading_ahead = owner
        self._read_ahead(owner, self._epoch, self.view, tn.data.row.links > 0)

    @work(thread=True, group="tree-read-ahead", exit_on_error=False)
    def _read_ahead(self, owner: str, epoch: int, view: View, links: bool) -> None:
        try:
            page = self.service.children(view.lineage, owner, branch=view.branch, offset=0, links=links)
        except Exception:  # noqa: BLE001 - nobody asked yet: an expand reads again, and says why it fails
            page = None
        self.post_message(self.ChildrenReadAhead(owner, page, epoch))

    @on(ChildrenReadAhead)
    def _on_read_ahead(self, message: ChildrenReadAhead) -> None:
        message.stop()
        if self._reading_ahead == message.owner:
            self._reading_ahead = None
        if message.epoch != self._epoch:
            return
        holder = self._waiting.pop(message.owner, None)
        if holder is not None:  # expanded while it was read
            if holder.tree is self:
                if message.page is None:
                    self._load(holder, offset=0, replace=True)
                else:
                    self._apply_page(holder, message.page, holder.data.token, self._epoch, True)
            return
        if message.page is not None:
            self._ahead = (message.owner, message.page, time.monotonic())  # the latest only

    @work(thread=True, group="tree-load", exit_on_error=False)
    def _fetch(self, holder, owner: str | None, offset: int, token: int, epoch: int, replace: bool, view: View,
               links: bool) -> None:
        svc = self.service
        if owner is None:
            if not view.flt.empty:
                rows, total = svc.find(view.lineage, view.flt, branch=view.branch)
                page = Page(rows, total, 0)
            else:
                page = svc.roots(view.lineage, view.branch, offset=offset)
        else:
            page = svc.children(view.lineage, owner, branch=view.branch, offset=offset, links=links)
        self.post_message(self.PageLoaded(holder, page, token, epoch, replace))

    @on(PageLoaded)
    def _on_page(self, message: PageLoaded) -> None:
        message.stop()
        self._apply_page(message.holder, message.page, message.token, message.epoch, message.replace)

    def _apply_page(self, holder: TreeNode[Slot], page: Page, token: int, epoch: int, replace: bool) -> None:
        if epoch != self._epoch or holder.data.token != token:
            return  # a newer load of this node (or another lineage) superseded this one
        if holder is not self.root and holder.tree is not self:
            return
        if replace:
            self._forget_children(holder)
            holder.remove_children()
        else:  # drop the "load more" line that asked for this page
            for child in list(holder.children):
                if child.data.kind == "more":
                    child.remove()
        flat = not self.view.flt.empty and holder is self.root
        self._add_rows(holder, page.rows, chain=page.chain, flat=flat)
        if page.offset == 0:
            for row in page.links:
                tn = holder.add_leaf(row.node, Slot("link", row))
                self._shown.setdefault(row.node, []).append(tn)
        shown = page.offset + len(page.rows)
        if not page.chain and shown < page.total:
            owner = None if holder is self.root else holder.data.row.node
            holder.add_leaf(Text(f"… {page.total - shown:,} more (select to load {min(1000, page.total - shown):,})",
                                 style="italic dim"), Slot("more", owner=owner, offset=shown))
        if not page.rows and not page.links and holder is self.root:
            note = "no node matches the filter" if not self.view.flt.empty else "no nodes on this branch"
            holder.add_leaf(Text(note, style="dim"), Slot("note"))
        holder.data.loaded = True
        if holder is not self.root and not holder.is_expanded:
            holder.expand()
        if holder is self.root and self._open_first:
            # a fresh view opens its first root, so the first screen shows the lineage, not one line
            self._open_first = False
            first = next((c for c in holder.children if c.data.kind == "node" and c.allow_expand), None)
            if first is not None:
                self._want_expanded.add(first.data.row.node)
        self._restore()

    def _add_rows(self, holder: TreeNode[Slot], rows: list[NodeRow], *, chain: bool, flat: bool) -> None:
        """Add a page of nodes under ``holder`` at once.

        ``TreeNode.add`` invalidates the whole tree and parses its label as markup, twice,
        for every node: a page of 1,000 children spent ~60 ms there. Here each node is
        made as ``add`` makes it, with its label as plain text (``render_label`` draws the
        real one), and the tree is invalidated once."""
        last = len(rows) - 1
        children = holder._children
        shown = self._shown
        for i, row in enumerate(rows):
            chain_member = chain and i < last
            tn = self._add_node(holder, Text(row.node), Slot("node", row, chain_member=chain_member))
            tn._expanded = False
            tn._allow_expand = (row.children > 0 or row.links > 0) and not chain_member and not flat
            children.append(tn)
            shown.setdefault(row.node, []).append(tn)
        holder._updates += 1
        self._invalidate()

    def process_label(self, label: str | Text) -> Text:
        # A one-line Text is used as it is: Tree's own processing splits it into lines.
        if isinstance(label, Text) and "\n" not in label.plain:
            return label
        return super().process_label(label)

    def _label(self, row: NodeRow, chain_member: bool = False) -> Text:
        return node_label(row, best=row.node == self.best_node, chain=chain_member)

    def _forget_children(self, holder: TreeNode[Slot]) -> None:
        stack = list(holder.children)
        while stack:
            tn = stack.pop()
            stack.extend(tn.children)
            row = tn.data.row if tn.data else None
            if row is not None:
                lst = self._shown.get(row.node)
                if lst and tn in lst:
                    lst.remove(tn)
                    if not lst:
                        del self._shown[row.node]

    def _restore(self) -> None:
        """After a load: re-expand what was expanded, put the cursor back, continue a jump."""
        for node_id in list(self._want_expanded):
            for tn in self._shown.get(node_id, []):
                if tn.data.kind == "node" and tn.allow_expand and self._visible(tn):
                    self._want_expanded.discard(node_id)
                    if not tn.data.loaded:
                        self._load(tn, offset=0, replace=True)
                    elif not tn.is_expanded:
                        tn.expand()
        if self._reveal:
            self._continue_reveal()
            return
        if self._want_cursor:
            tn = self._visible_node(self._want_cursor)
            if tn is not None:
                self._want_cursor = None
                self._put_cursor(tn)
        elif self.cursor_line < 0 and self.root.children:
            self.call_after_refresh(self._cursor_first)

    def _cursor_first(self) -> None:
        if self.cursor_line < 0 and self.last_line >= 0:
            self.move_cursor_to_line(0)

    # -- expanding ---------------------------------------------------------------------------

    @on(Tree.NodeExpanded)
    def _on_expanded(self, event: Tree.NodeExpanded[Slot]) -> None:
        event.stop()
        slot = event.node.data
        if slot.kind == "node" and not slot.loaded:
            self._load(event.node, offset=0, replace=True)

    @on(Tree.NodeSelected)
    def _on_selected(self, event: Tree.NodeSelected[Slot]) -> None:
        slot = event.node.data
        if slot.kind == "more":
            event.stop()
            holder = event.node.parent
            event.node.set_label(Text("loading…", style="italic dim"))
            self._load(holder, offset=slot.offset, replace=False)
        elif slot.kind == "link" and slot.row:
            event.stop()
            self.reveal(slot.row.node)
        elif slot.kind == "node" and event.node.allow_expand:
            event.node.toggle()

    @on(Tree.NodeHighlighted)
    def _on_highlighted(self, event: Tree.NodeHighlighted[Slot]) -> None:
        event.stop()
        slot = event.node.data
        self.post_message(self.RowFocused(slot.row if slot and slot.kind in ("node", "link") else None))
        self._rest_on(event.node)

    def action_collapse_or_parent(self) -> None:
        tn = self.cursor_node
        if tn is None:
            return
        if tn.is_expanded and tn.children:
            tn.collapse()
        elif tn.parent is not None and tn.parent is not self.root:
            self._put_cursor(tn.parent)

    def action_expand_or_child(self) -> None:
        tn = self.cursor_node
        if tn is None:
            return
        if tn.allow_expand and not tn.is_expanded:
            if tn.data.kind == "node" and not tn.data.loaded:
                # Expanded when its children arrive (``_on_page``): the tree is redrawn once,
                # with them, instead of also while the query runs.
                self._load(tn, offset=0, replace=True)
            else:
                tn.expand()
        elif tn.is_expanded and tn.children:
            self._put_cursor(tn.children[0])

    # -- finding shown nodes -------------------------------------------------------------------

    def current_row(self) -> NodeRow | None:
        tn = self.cursor_node
        return tn.data.row if tn is not None and tn.data and tn.data.kind in ("node", "link") else None

    def expanded_ids(self) -> set[str]:
        out = set()
        stack = list(self.root.children)
        while stack:
            tn = stack.pop()
            if tn.is_expanded and tn.data.kind == "node" and tn.data.row:
                out.add(tn.data.row.node)
                stack.extend(tn.children)
        return out

    def shown_rows(self) -> dict[str, NodeRow]:
        return {node: tns[0].data.row for node, tns in self._shown.items() if tns}

    def _visible(self, tn: TreeNode[Slot]) -> bool:
        parent = tn.parent
        while parent is not None and parent is not self.root:
            if not parent.is_expanded:
                return False
            parent = parent.parent
        return tn.tree is self

    def _visible_node(self, node_id: str) -> TreeNode[Slot] | None:
        candidates = [tn for tn in self._shown.get(node_id, []) if tn.data.kind == "node"]
        for tn in candidates:
            if self._visible(tn):
                return tn
        return None

    def _put_cursor(self, tn: TreeNode[Slot]) -> None:
        def move() -> None:
            if tn.tree is self and tn.line >= 0:
                self.move_cursor(tn, animate=False)
                self.scroll_to_node(tn, animate=False)
        _ = self.last_line  # lay the lines out now so the node knows its line
        move()
        self.call_after_refresh(move)

    # -- jumping to a node ---------------------------------------------------------------------

    def reveal(self, node_id: str) -> None:
        """Expand the way down to a node and put the cursor on it."""
        if not self.view.flt.empty:
            self.view = View(self.view.lineage, self.view.branch)
            self.show(self.view, keep_state=True)
        self._want_cursor = None
        self._find_path(node_id, self.view.lineage, self._epoch)

    @work(thread=True, group="tree-reveal", exclusive=True, exit_on_error=False)
    def _find_path(self, node_id: str, lineage: str, epoch: int) -> None:
        path = self.service.path_to(lineage, node_id)
        self.app.call_from_thread(self._start_reveal, path, epoch)

    def _start_reveal(self, path: list[str], epoch: int) -> None:
        if epoch != self._epoch:
            return
        self._reveal = path
        self._reveal_target = path[-1] if path else None
        self._continue_reveal()

    def _continue_reveal(self) -> None:
        """One step down the path to the jump target; returns when a load must finish first
        (the load's ``PageLoaded`` comes back here)."""
        path = self._reveal
        for _ in range(len(path) + 2):
            shown = [i for i, node_id in enumerate(path) if self._visible_node(node_id) is not None]
            k = shown[-1] if shown else -1
            if k == len(path) - 1:
                break
            holder = self.root if k < 0 else self._visible_node(path[k])
            if holder is not self.root:
                if holder.data.chain_member:
                    break  # the next step should be right after it; it is not: give up
                if not holder.data.loaded:
                    self._load(holder, offset=0, replace=True)
                    return
                if not holder.is_expanded:
                    holder.expand()
                    continue
            elif not holder.data.loaded:
                return  # the roots are still loading; their PageLoaded resumes the jump
            more = next((c for c in holder.children if c.data.kind == "more"), None)
            if more is None:
                break
            self._load(holder, offset=more.data.offset, replace=False)
            return
        target = self._reveal_target
        self._reveal = []
        self._reveal_target = None
        found = self._visible_node(target) if target else None
        if found is not None:
            self._put_cursor(found)
        if target:
            self.post_message(self.Revealed(target, found is not None))

    # -- live ---------------------------------------------------------------------------------

    def apply_changes(self, new_nodes: list[NodeRow], touched: list[NodeRow]) -> None:
        """Show what a loop just recorded: relabel changed nodes, reload the lists that
        gained a node (keeping the cursor and what is expanded)."""
        self._ahead = None  # a page read ahead may lack the new nodes
        holders: dict[int, TreeNode[Slot]] = {}
        for row in touched + new_nodes:
            for tn in self._shown.get(row.node, []):
                if tn.data.kind == "node":
                    tn.data.row = row
                    tn.set_label(row.node)
                    expandable = (row.children > 0 or row.links > 0) and not tn.data.chain_member
                    if expandable and not tn.allow_expand:
                        tn.allow_expand = True
                elif tn.data.kind == "link":
                    tn.data.row = row
                    tn.set_label(row.node)
        if not self.view.flt.empty:
            return
        for row in new_nodes:
            if row.parent is None and (self.view.branch is None or row.branch == self.view.branch):
                holders[id(self.root)] = self.root
                continue
            for parent_id in {row.parent, *row.other_parents}:
                for tn in self._shown.get(parent_id or "", []):
                    if tn.data.kind != "node":
                        continue
                    if tn.data.loaded:
                        holders[id(tn)] = tn
                    elif tn.data.chain_member or (tn.parent is not None and tn.parent.data.kind == "node"
                                                  and any(c.data.chain_member for c in tn.parent.children)):
                        # the run of only children it belongs to has forked or grown
                        holder = tn.parent
                        holders[id(holder)] = holder
        for holder in holders.values():
            if holder is self.root or holder.tree is self:
                self.reload(holder)

    def relabel_all(self) -> None:
        """Draw every shown node again (after signals or the best node changed)."""
        self._clear_line_cache()
        self.refresh()

    def update_rows(self, rows: list[NodeRow]) -> None:
        for row in rows:
            for tn in self._shown.get(row.node, []):
                tn.data.row = row
        self.relabel_all()
