"""Field-by-field validation of plain dicts (parsed YAML/TOML) that collects *every* problem with
its dotted path and a fix, instead of stopping at the first.

Used by the model spec loader and, later, by target presets and pipeline specs.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from codesign.errors import FieldProblem, SpecError

MISSING: Any = object()


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 6
_REPR.maxlevel = 3
_DIGITS = re.compile(r"\d{1,18}", re.ASCII)


def show(value: Any) -> str:
    """A short, one-line rendering of a user's value for messages (never raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        digits = int(value.bit_length() * 0.30103) + 1
        return f"<{'-' if value < 0 else ''}{digits}-digit integer>"
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError, TypeError):
        return f"<{type(value).__name__}>"


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key or not key.isprintable() or len(key) > 60:
        key = show(key)  # quoted: empty, multi-line or very long keys stay readable
    return f"{path}.{key}" if path else key


def _typename(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


class Checker:
    """Collects :class:`FieldProblem` s; ``raise_if_any`` raises them as one :class:`SpecError`."""

    def __init__(self, *, source: str = "") -> None:
        self.source = source
        self.problems: list[FieldProblem] = []

    def add(self, path: str, message: str, fix: str = "") -> None:
        self.problems.append(FieldProblem(path, message, fix))

    def raise_if_any(self) -> None:
        if self.problems:
            raise SpecError(self.problems, source=self.source)

    def header(
        self,
        top: dict,
        kind: str,
        *,
        toml: bool = False,
        not_this: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """A document's ``version`` (1) and ``kind``. A document of another known kind
        (``not_this``: kind -> (message, fix)) is refused at once, with nothing else said."""
        if toml:
            set_version, set_kind = "set version = 1", f'set kind = "{kind}"'
        else:
            set_version, set_kind = "set 'version: 1'", f"set 'kind: {kind}'"
        if top.get("version") != 1 or type(top.get("version")) is not int:
            self.add("version", f"must be 1, got {show(top.get('version'))}", set_version)
        other = top.get("kind")
        if isinstance(other, str) and other in (not_this or {}):
            self.add("kind", *not_this[other])
            self.raise_if_any()
        if other != kind:
            self.add("kind", f"must be {kind!r}, got {show(other)}", set_kind)

    # --- shapes of values ------------------------------------------------------------------

    def mapping(self, value: Any, path: str, *, what: str = "a mapping") -> dict | None:
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if not bad:
                return dict(value)
            self.add(
                f"{path or '(top level)'}.{show(bad[0])}",
                f"keys must be text, got {_typename(bad[0])}",
                "quote the key",
            )
            return None
        self.add(
            path or "(top level)",
            f"must be {what}, got {_typename(value)}",
            "write key: value pairs",
        )
        return None

    def require(self, data: dict, key: str, path: str, fix: str) -> Any:
        if key not in data or data[key] is None:
            self.add(join(path, key), "is required", fix)
            return MISSING
        return data[key]

    def no_extra(self, data: dict, allowed: Iterable[str], path: str) -> None:
        allowed = list(allowed)
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                fix = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"allowed keys: {', '.join(allowed)}"
                )
                self.add(join(path, key), "unknown field", fix)

    # --- scalars ---------------------------------------------------------------------------

    def integer(
        self,
        data: dict,
        key: str,
        path: str,
        *,
        minimum: int = 1,
        maximum: int | None = None,
        default: Any = MISSING,
        fix: str = "",
    ) -> int | None:
        """An integer in [minimum, maximum]; ``None`` (after recording a problem) otherwise."""
        where = join(path, key)
        if key not in data or data[key] is None:
            if default is MISSING:
                self.add(where, "is required", fix or f"set an integer >= {minimum}")
                return None
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                self.add(where, f"must be an integer, got {show(value)}", f"write {int(value)}")
            else:
                self.add(
                    where,
                    f"must be an integer, got {_typename(value)} {show(value)}",
                    fix or f"set an integer >= {minimum}",
                )
            return None
        if value < minimum:
            what = "positive" if minimum == 1 else f">= {minimum}"
            self.add(
                where, f"must be {what}, got {show(value)}", fix or f"set an integer >= {minimum}"
            )
            return None
        if maximum is not None and value > maximum:
            self.add(
                where, f"is {show(value)}, above the limit {maximum}", f"set at most {maximum}"
            )
            return None
        return value

    def boolean(self, data: dict, key: str, path: str, *, default: bool) -> bool:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(
                join(path, key), f"must be true or false, got {show(value)}", "write true or false"
            )
            return default
        return value

    def choice(
        self, data: dict, key: str, path: str, choices: Iterable[str], *, default: Any = MISSING
    ) -> str | None:
        choices = list(choices)
        where = join(path, key)
        if key not in data or data[key] is None:
            if default is MISSING:
                self.add(where, "is required", f"one of: {', '.join(choices)}")
                return None
            return default
        value = data[key]
        if value not in choices:
            close = difflib.get_close_matches(show(value), choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.add(
                where,
                f"must be one of {', '.join(choices)}; got {show(value)}",
                f"{hint}use one of: {', '.join(choices)}",
            )
            return None
        return value

    def text(self, data: dict, key: str, path: str, *, default: Any = MISSING) -> str | None:
        where = join(path, key)
        if key not in data or data[key] is None:
            if default is MISSING:
                self.add(where, "is required", "write a short text")
                return None
            return default
        value = data[key]
        if not isinstance(value, str) or (default is MISSING and not value.strip()):
            self.add(
                where, f"must be non-empty text, got {_typename(value)} {show(value)}", "quote it"
            )
            return None
        return value

    def int_list(
        self,
        data: dict,
        key: str,
        path: str,
        *,
        allow_empty: bool = False,
        maximum: int | None = None,
        max_len: int = 256,
        default: Any = MISSING,
        fix: str = "",
    ) -> list[int] | None:
        """A list of positive integers; also accepts the 'a-b-c' string form of the sources."""
        where = join(path, key)
        if key not in data or data[key] is None:
            if default is MISSING:
                self.add(where, "is required", fix or "write a list of layer widths, e.g. [64, 32]")
                return None
            return default
        value = data[key]
        if isinstance(value, str):
            parts = value.split("-")
            if all(_DIGITS.fullmatch(p.strip()) for p in parts):
                value = [int(p) for p in parts]
        if not isinstance(value, list):
            self.add(
                where,
                f"must be a list of positive integers, got {_typename(value)} {show(value)}",
                fix or "write e.g. [64, 32] or '64-32'",
            )
            return None
        if not value and not allow_empty:
            self.add(where, "must not be empty", fix or "list at least one layer width")
            return None
        if len(value) > max_len:
            self.add(where, f"has {len(value)} entries, above the limit {max_len}", "shorten it")
            return None
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
                self.add(
                    join(where, i),
                    f"must be a positive integer, got {show(item)}",
                    fix or "use positive layer widths",
                )
                return None
            if maximum is not None and item > maximum:
                self.add(
                    join(where, i),
                    f"is {show(item)}, above the limit {maximum}",
                    f"set at most {maximum}",
                )
                return None
            out.append(item)
        return out
