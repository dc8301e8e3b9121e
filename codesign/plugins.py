"""Target registry over the ``codesign.targets`` entry-point group: the only user of
``importlib.metadata``. Built-in targets register through the same group as plugins.

Listing reads entry-point metadata only; nothing is imported until a target is loaded. A plugin
that fails to load becomes one :class:`PluginError` naming its distribution. Set
``CODESIGN_NO_PLUGINS=1`` to ignore every target not shipped by codesign itself.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError, UnknownNameError
from codesign.ir.frontends.checker import show

GROUP = "codesign.targets"
DISABLE_ENV = "CODESIGN_NO_PLUGINS"
BUILTIN_DISTRIBUTION = "codesign"


class PluginError(CodesignError):
    """A plugin target could not be loaded or does not implement the Target protocol."""


@dataclass(frozen=True)
class TargetEntry:
    name: str
    value: str
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "") not in ("", "0", "false")


def target_entries() -> dict[str, TargetEntry]:
    """Registered targets by name, without importing any of them."""
    out: dict[str, TargetEntry] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        entry = TargetEntry(ep.name, ep.value, dist, version)
        if plugins_disabled() and not entry.builtin:
            continue
        if ep.name in out and out[ep.name].builtin:
            continue  # a plugin cannot shadow a built-in name
        out[ep.name] = entry
    return dict(sorted(out.items()))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _is_file(name: str) -> bool:
    """Whether ``name`` is an existing file; False for what cannot be a path (too long, NUL)."""
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


def load_target(name: str) -> Any:
    """The target called ``name`` (or a target preset .yaml file), loaded and checked."""
    if name.endswith((".yaml", ".yml")) or name.startswith(("/", "./", "../")) or _is_file(name):
        from codesign.targets.builtin import target_from_file

        return target_from_file(Path(name))
    return _load(name, plugins_disabled())


@cache
def _load(name: str, disabled: bool) -> Any:
    """Cached per (name, whether plugins are disabled) so the switch takes effect at once."""
    from codesign.targets.base import Target

    entries = target_entries()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=2, cutoff=0.4)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownNameError(
            f"unknown target {show(name)} ({hint}valid: {', '.join(entries)}; "
            "or pass a target preset .yaml)"
        )
    entry = entries[name]
    where = (
        "built-in target"
        if entry.builtin
        else f"plugin target from distribution {entry.distribution}"
    )
    try:
        factory = next(
            ep
            for ep in entry_points(group=GROUP)
            if ep.name == name and (ep.dist is None or ep.dist.name == entry.distribution)
        ).load()
        target = factory() if callable(factory) and not isinstance(factory, type) else factory
        if isinstance(target, type):
            target = target()
    except CodesignError as exc:
        if entry.builtin:
            raise
        raise PluginError(
            f"{where} {name!r} ({entry.value}) failed to load: {_one_line(exc)}"
        ) from exc
    except Exception as exc:  # a broken plugin must not crash the CLI with a traceback
        raise PluginError(
            f"{where} {name!r} ({entry.value}) failed to load: "
            f"{exc.__class__.__name__}: {_one_line(exc)}"
        ) from exc
    if not isinstance(target, Target):
        raise PluginError(
            f"{where} {name!r} ({entry.value}) does not implement the Target protocol "
            "(design_space, supports, op_cost, hw_cost)"
        )
    return target
