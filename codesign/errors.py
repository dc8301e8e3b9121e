"""Error types caught at the CLI boundary and rendered as one line each.

Every error a user can cause derives from :class:`CodesignError`; anything else escaping to the
CLI is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class CodesignError(Exception):
    """Base class for errors caused by input; the CLI prints ``str(err)`` on one line."""


@dataclass(frozen=True)
class FieldProblem:
    """One bad field: where it is (dotted path), what is wrong, and how to fix it."""

    path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text


class SpecError(CodesignError):
    """A spec (YAML or dict) failed validation; carries every problem found, with its path."""

    def __init__(self, problems: list[FieldProblem], *, source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        return " ".join(self._compose().split())  # one line, whatever the values hold

    def _compose(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if not self.problems:
            return f"{prefix}invalid spec"
        first = str(self.problems[0])
        rest = len(self.problems) - 1
        if rest:
            others = "; ".join(str(p) for p in self.problems[1:4])
            more = f"; and {rest - 3} more" if rest > 3 else ""
            return f"{prefix}{first}; also {others}{more}"
        return prefix + first


class UnknownNameError(CodesignError):
    """A name (model, target, op) that is not registered."""


class IRError(CodesignError):
    """A graph that violates an IR invariant (found by ``Graph.lint`` or a graph edit)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:5])
        more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        super().__init__(f"invalid graph: {shown}{more}")


class ImportFailure(CodesignError):
    """A foreign model (PyTorch) contains something the importer cannot lower."""
