"""Target presets: YAML documents (``version: 1``, ``kind: target``) that name a target type
(cpu, gpu, accel) and set its knobs' defaults. Built-in presets live in ``presets/``; users
may pass their own file anywhere a target name is accepted.

A preset may set only some knobs: the others take their type's defaults (the values the
type's ``knobs`` function falls back to). A knob the type has no default for (a datasheet
figure such as a GPU's peak FLOP/s) must be set; every missing one is named in one error,
as is every unknown knob (with the closest valid name) and every value out of range."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from codesign.cost_models import workload
from codesign.errors import SpecError
from codesign.ir.frontends.checker import Checker, show
from codesign.ir.frontends.spec import read_yaml
from codesign.targets.base import BaseTarget, DesignSpace, KnobError

TARGET_TYPES = ("cpu", "gpu", "accel")
PRESET_FIELDS = ("version", "kind", "name", "type", "description", "source", "tech", "knobs")


@dataclass(frozen=True)
class Preset:
    name: str
    type: str
    description: str
    source: str
    knobs: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    #: accel only: the technology table that prices its silicon (a built-in name or a path;
    #: "" for the default, :data:`codesign.targets.technology.DEFAULT_TECH`)
    tech: str = ""


class PresetTarget(BaseTarget):
    """A built-in target type configured by a preset: the preset's knob values become the
    design space's defaults. Subclasses give ``knobs(defaults, target_name)``."""

    supported_ops = workload.GEMM_OPS | workload.GATHER_OPS | workload.VECTOR_OPS

    def __init__(self, preset: Preset) -> None:
        self.name = preset.name
        self.description = preset.description
        self.source = preset.source
        #: The preset's knob values as the type reads them (CPU: with the detected host's
        #: figures where ``detect: true``); every other knob has its type's default.
        self.preset_values = self.preset_defaults(preset)
        self._space = merged_space(
            type(self).knobs,
            self.preset_values,
            target=self.name,
            source=preset.path or preset.name,
            kind=preset.type or getattr(self, "kind", ""),
        )

    @staticmethod
    def knobs(defaults: dict[str, Any], target: str) -> DesignSpace:  # pragma: no cover
        raise NotImplementedError

    def preset_defaults(self, preset: Preset) -> dict[str, Any]:
        return dict(preset.knobs)

    def design_space(self) -> DesignSpace:
        return self._space

    def describe(self) -> dict[str, Any]:
        return {"source": self.source}


class _Probe(dict):
    """Values as a type's ``knobs`` function reads them. A knob it reads by subscript
    (``d["sms"]``: the type has no default) that is absent is recorded in ``missing`` and
    stands in as 1, so one pass finds every knob the type requires."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.missing: list[str] = []

    def __missing__(self, key: str) -> Any:
        self.missing.append(key)
        return 1


KnobsFunction = Callable[[dict[str, Any], str], DesignSpace]


def _template(knobs: KnobsFunction) -> tuple[DesignSpace, tuple[str, ...]]:
    """The type's knobs (names, kinds, ranges; required knobs at a stand-in default) and the
    names of those it has no default for."""
    probe = _Probe({})
    space = knobs(probe, "")
    return space, tuple(dict.fromkeys(probe.missing))


def merged_space(
    knobs: KnobsFunction, values: dict[str, Any], *, target: str, source: str, kind: str
) -> DesignSpace:
    """The design space of a target whose preset sets ``values``: those knobs' defaults are the
    preset's, every other knob keeps its type's default. Raises one :class:`SpecError` naming
    ``source`` and every problem: unknown knobs (with the closest valid name), values a knob
    refuses, and the knobs the type has no default for that the preset leaves out. The type's
    ``knobs`` function only ever sees valid values."""
    template, required = _template(knobs)
    names = template.names()
    chk = Checker(source=source)
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(names)}"
            chk.add(f"knobs.{name}", f"unknown {kind} knob {show(name)}", fix)
            continue
        try:
            parsed[name] = template[name].parse(value)
        except KnobError as exc:
            chk.add(f"knobs.{name}", str(exc).removeprefix(f"knob {name}: "))
    missing = [name for name in required if name not in values]
    if missing:
        chk.add(
            "knobs",
            f"missing {', '.join(missing)}: the {kind} type has no default for them",
            "set them under knobs:; `codesign targets show` lists a built-in's values",
        )
    chk.raise_if_any()
    return knobs(parsed, target).with_defaults(parsed)


def type_defaults(knobs: KnobsFunction) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A target type's defaults (knob -> the value a preset that leaves it out gets) and the
    knobs it has no default for (a preset must set them)."""
    template, required = _template(knobs)
    return {k.name: k.default for k in template.knobs if k.name not in required}, required


def preset_dir() -> Path:
    return Path(str(resources.files("codesign.targets") / "presets"))


def read_preset(path: Path) -> Preset:
    data = read_yaml(path, what="target preset")
    chk = Checker(source=str(path))
    top = chk.mapping(data, "", what="a mapping (version, kind, name, type, knobs)")
    if top is None:
        raise SpecError(chk.problems, source=str(path))
    tech_table = (
        "this is a technology table, not a target preset",
        "name it in an accel preset's tech: field; `codesign targets validate` checks it",
    )
    chk.header(top, "target", not_this={"tech": tech_table})
    chk.no_extra(top, PRESET_FIELDS, "")
    name = chk.text(top, "name", "")
    kind = chk.choice(top, "type", "", TARGET_TYPES)
    description = chk.text(top, "description", "", default="")
    source = chk.text(top, "source", "", default="")
    knobs = chk.mapping(top.get("knobs") or {}, "knobs", what="a mapping of knob: value")
    tech = chk.text(top, "tech", "", default="")
    if tech and kind in ("cpu", "gpu"):
        chk.add(
            "tech",
            f"a {kind} preset takes no technology table (its power is the tdp_w knob)",
            "remove tech:, or use type: accel",
        )
    chk.raise_if_any()
    return Preset(
        name=name or "",
        type=kind or "",
        description=description or "",
        source=source or "",
        knobs=knobs or {},
        path=str(path),
        tech=tech or "",
    )
