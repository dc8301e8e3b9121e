"""Target presets: YAML documents (``version: 1``, ``kind: target``) that name a target type
(cpu, gpu, accel) and set its knobs' defaults. Built-in presets live in ``presets/``; users
may pass their own file anywhere a target name is accepted."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from codesign.cost_models import workload
from codesign.errors import SpecError
from codesign.ir.frontends.checker import Checker
from codesign.ir.frontends.spec import read_yaml
from codesign.targets.base import BaseTarget, DesignSpace

TARGET_TYPES = ("cpu", "gpu", "accel")


@dataclass(frozen=True)
class Preset:
    name: str
    type: str
    description: str
    source: str
    knobs: dict[str, Any] = field(default_factory=dict)
    path: str = ""


class PresetTarget(BaseTarget):
    """A built-in target type configured by a preset: the preset's knob values become the
    design space's defaults. Subclasses give ``knobs(defaults, target_name)``."""

    supported_ops = workload.GEMM_OPS | workload.GATHER_OPS | workload.VECTOR_OPS

    def __init__(self, preset: Preset) -> None:
        self.name = preset.name
        self.description = preset.description
        self.source = preset.source
        defaults = self.preset_defaults(preset)
        self._space = self.knobs(defaults, self.name).with_defaults(defaults)

    @staticmethod
    def knobs(defaults: dict[str, Any], target: str) -> DesignSpace:  # pragma: no cover
        raise NotImplementedError

    def preset_defaults(self, preset: Preset) -> dict[str, Any]:
        return dict(preset.knobs)

    def design_space(self) -> DesignSpace:
        return self._space

    def describe(self) -> dict[str, Any]:
        return {"source": self.source}


def preset_dir() -> Path:
    return Path(str(resources.files("codesign.targets") / "presets"))


def read_preset(path: Path) -> Preset:
    data = read_yaml(path, what="target preset")
    chk = Checker(source=str(path))
    top = chk.mapping(data, "", what="a mapping (version, kind, name, type, knobs)")
    if top is None:
        raise SpecError(chk.problems, source=str(path))
    if top.get("version") != 1 or type(top.get("version")) is not int:
        chk.add("version", f"must be 1, got {top.get('version')!r}", "set 'version: 1'")
    if top.get("kind") != "target":
        chk.add("kind", f"must be 'target', got {top.get('kind')!r}", "set 'kind: target'")
    chk.no_extra(top, ("version", "kind", "name", "type", "description", "source", "knobs"), "")
    name = chk.text(top, "name", "")
    kind = chk.choice(top, "type", "", TARGET_TYPES)
    description = chk.text(top, "description", "", default="")
    source = chk.text(top, "source", "", default="")
    knobs = chk.mapping(top.get("knobs") or {}, "knobs", what="a mapping of knob: value")
    chk.raise_if_any()
    return Preset(name or "", kind or "", description or "", source or "", knobs or {}, str(path))
