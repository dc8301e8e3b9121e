"""The shipped model zoo: one YAML spec per model in ``zoo/``, addressed by name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from codesign.errors import UnknownNameError
from codesign.ir.frontends.checker import show
from codesign.ir.frontends.spec import ModelSpec, load_spec

ZOO_PACKAGE = "codesign.ir.frontends"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    arch: str
    family: str
    description: str
    path: str


def _zoo_dir() -> Path:
    return Path(str(resources.files(ZOO_PACKAGE) / "zoo"))


@cache
def _entries() -> dict[str, ZooEntry]:
    out: dict[str, ZooEntry] = {}
    for path in sorted(_zoo_dir().glob("*.yaml")):
        spec = load_spec(path, origin=f"zoo/{path.name}")
        family = path.stem.split("__")[0] if "__" in path.stem else spec.arch
        out[spec.name] = ZooEntry(spec.name, spec.arch, family, spec.description, str(path))
    return out


def list_models() -> list[ZooEntry]:
    """Every zoo model, in file order (grouped by family)."""
    return list(_entries().values())


@cache
def _zoo_spec(path: str) -> ModelSpec:
    """Zoo specs are package data: parse each once per process (specs are frozen)."""
    return load_spec(path, origin=f"zoo/{Path(path).name}")


def _is_file(text: str) -> bool:
    """Whether ``text`` is an existing file; False for what cannot be a path (too long, NUL)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def resolve(name_or_path: str | Path) -> ModelSpec:
    """A zoo model by name, or a spec file by path (anything ending in .yaml/.yml or existing)."""
    text = str(name_or_path)
    if (
        isinstance(name_or_path, Path)
        or text.endswith((".yaml", ".yml"))
        or "/" in text  # zoo names have none: a path, reported as a file when it is none
        or _is_file(text)
    ):
        return load_spec(Path(text))
    entries = _entries()
    key = text.strip().lower()
    if key in entries:
        return _zoo_spec(entries[key].path)
    close = difflib.get_close_matches(key, list(entries), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownNameError(
        f"unknown model {show(text)} ({hint}run 'codesign models list' for the zoo, "
        "or pass a path to a .yaml spec)"
    )
