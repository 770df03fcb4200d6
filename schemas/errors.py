"""The error a producer sees when an event does not fit its schema.

Every message names the field (as a dotted path inside the envelope or payload)
and says what was expected, so a producer in any language can fix its output.
"""

from __future__ import annotations


class SchemaError(ValueError):
    """An event, envelope or payload that does not validate.

    ``problems`` is a list of ``(field_path, message)`` pairs, first problem first.
    """

    def __init__(self, problems: list[tuple[str, str]], *, kind: str | None = None):
        self.problems = problems
        self.kind = kind
        where = f" ({kind} event)" if kind else ""
        lines = [f"{path}: {msg}" for path, msg in problems]
        super().__init__(f"invalid event{where}: " + "; ".join(lines))

    @property
    def field(self) -> str:
        return self.problems[0][0] if self.problems else ""


def from_pydantic(exc, *, prefix: str, kind: str | None = None) -> SchemaError:
    """Turn a pydantic ValidationError into a SchemaError with dotted field paths."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        path = f"{prefix}.{loc}" if loc else prefix
        msg = err.get("msg", "invalid")
        if "input" in err and err.get("type") not in ("missing",):
            got = repr(err["input"])
            if len(got) > 60:
                got = got[:57] + "..."
            msg = f"{msg} (got {got})"
        problems.append((path, msg))
    return SchemaError(problems, kind=kind)
