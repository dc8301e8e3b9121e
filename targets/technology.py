"""Technology tables: YAML documents (``version: 1``, ``kind: tech``) giving, for one process
node, the area and power of each part an accelerator is built from, per unit (a block of PEs,
an SRAM macro, a logic unit), and DRAM's energy per byte, each figure with its source. They
play the role of Accelergy's area and energy reference tables or ZigZag's memory and operator
costs, for the parts :mod:`codesign.targets.accel` counts.

An accel preset names one with ``tech:``: a built-in name (a file in ``tech/``) or a path to a
``.yaml`` (relative to the preset's folder). Without ``tech:`` it is :data:`DEFAULT_TECH`, the
GF 12LP synthesis figures of RecPipe's RPAccel.

Power: ``power_mw`` is dynamic power at the table's ``clock_hz`` and scales linearly with the
design's clock (a fixed voltage); ``energy_pj_per_cycle`` says the same per cycle instead
(``power_mw = energy_pj_per_cycle x clock_hz / 1e9``). ``leakage_mw`` is static power that
does not scale (default 0). Energy = power x latency + DRAM bytes x ``energy_pj_per_byte``."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from codesign.errors import FieldProblem, SpecError
from codesign.ir.frontends.checker import Checker, show
from codesign.ir.frontends.spec import read_yaml

DEFAULT_TECH = "rpaccel-12nm"

#: Component -> (what one unit is, the field that sizes a unit or ""). An accel design counts
#: its units: PEs / ``pes`` blocks, SRAM bytes / ``macro_bytes`` macros, one per logic unit.
COMPONENTS: dict[str, tuple[str, str]] = {
    "systolic_array": ("a block of `pes` PEs of a reconfigurable array (RPAccel)", "pes"),
    "systolic_array_fixed": ("a block of `pes` PEs of a fixed array (TPU-like)", "pes"),
    "simd_unit": ("one SIMD unit (PEs/16 reconfigurable; one per column fixed)", ""),
    "crossbar": ("one crossbar (PEs/64, reconfigurable arrays only)", ""),
    "topk_unit": ("one top-k filter unit", ""),
    "activation_sram": ("one activation SRAM macro of a reconfigurable array", "macro_bytes"),
    "activation_sram_fixed": ("one activation SRAM macro of a fixed array", "macro_bytes"),
    "weight_sram": ("one weight SRAM macro", "macro_bytes"),
    "embedding_sram": ("one embedding-cache SRAM macro", "macro_bytes"),
    "dram": ("off-chip DRAM: energy per byte moved", ""),
}
#: Figures of every component but ``dram`` (which has ``energy_pj_per_byte`` only).
_POWER_FIELDS = ("power_mw", "energy_pj_per_cycle")
_SIZING_FIX = {
    "pes": "set pes: how many PEs the block's figures are for",
    "macro_bytes": "set macro_bytes: the bytes one macro holds",
}
_TOP_FIELDS = ("version", "kind", "name", "description", "source", "clock_hz", "components")


@dataclass(frozen=True, kw_only=True)
class Component:
    """One unit's figures: area (µm²), dynamic power at the table's clock (mW), static power
    (mW), the PEs of a block or bytes of a macro, DRAM's energy per byte (pJ), and the
    source."""

    name: str
    area_um2: float = 0.0
    power_mw: float = 0.0
    leakage_mw: float = 0.0
    pes: int = 0
    macro_bytes: int = 0
    energy_pj_per_byte: float = 0.0
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class TechTable:
    """A process node's figures for every component in :data:`COMPONENTS`."""

    name: str
    clock_hz: float
    components: Mapping[str, Component]
    description: str = ""
    source: str = ""
    path: str = ""
    digest: str = field(default="", compare=False)

    def __getitem__(self, component: str) -> Component:
        return self.components[component]

    @property
    def dram_j_per_byte(self) -> float:
        return self["dram"].energy_pj_per_byte / 1e12

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "description": self.description,
            "source": self.source,
            "clock_hz": self.clock_hz,
            "digest": self.digest,
            "components": {
                name: {k: v for k, v in asdict(c).items() if k != "name" and v not in (0, "")}
                for name, c in self.components.items()
            },
        }


def tech_dir() -> Path:
    return Path(str(resources.files("codesign.targets") / "tech"))


def builtin_tech_names() -> list[str]:
    return sorted(p.stem for p in tech_dir().glob("*.yaml"))


def is_tech_document(data: Any) -> bool:
    return isinstance(data, Mapping) and data.get("kind") == "tech"


def resolve_tech(ref: str, *, preset_path: str = "", source: str = "") -> TechTable:
    """The table a preset's ``tech: ref`` names: a built-in name, or a ``.yaml`` path (relative
    to the preset's folder, else to the working directory). An unknown name or a missing file
    is one :class:`SpecError` naming ``source`` (the preset) and its ``tech`` field."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref:
        path = Path(ref).expanduser()
        if not path.is_absolute() and preset_path:
            beside = Path(preset_path).parent / path
            path = beside if beside.exists() or not path.exists() else path
        if not path.exists():
            raise SpecError(
                [FieldProblem("tech", f"technology table {path} not found", "check the path")],
                source=source,
            )
        return read_tech(path)
    names = builtin_tech_names()
    if ref not in names:
        close = difflib.get_close_matches(ref, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError(
            [
                FieldProblem(
                    "tech",
                    f"no built-in technology table {show(ref)}",
                    f"{hint}use one of {', '.join(names)}, or a path to a kind: tech .yaml",
                )
            ],
            source=source,
        )
    return read_tech(tech_dir() / f"{ref}.yaml")


def read_tech(path: Path) -> TechTable:
    """A technology table file, checked as a whole: every problem (unknown or missing
    component, missing or non-positive figure, unknown field) in one :class:`SpecError`
    naming the file and each field."""
    data = read_yaml(path, what="technology table")
    return parse_tech(data, source=str(path))


def parse_tech(data: Any, *, source: str) -> TechTable:
    chk = Checker(source=source)
    top = chk.mapping(data, "", what="a mapping (version, kind, name, clock_hz, components)")
    if top is None:
        raise SpecError(chk.problems, source=source)
    preset = (
        "this is a target preset, not a technology table",
        "tech: names a kind: tech file (docs/targets.md shows one)",
    )
    chk.header(top, "tech", not_this={"target": preset})
    chk.no_extra(top, _TOP_FIELDS, "")
    name = chk.text(top, "name", "")
    description = chk.text(top, "description", "", default="")
    source_text = chk.text(top, "source", "", default="")
    clock_hz = _number(chk, top, "clock_hz", "", what="the clock the power figures are taken at")
    raw = chk.mapping(top.get("components") or {}, "components", what="a mapping of component")
    components: dict[str, Component] = {}
    if raw is not None:
        for comp, figures in raw.items():
            if comp not in COMPONENTS:
                close = difflib.get_close_matches(comp, list(COMPONENTS), n=1)
                fix = f"did you mean {close[0]!r}?" if close else "use the names listed below"
                chk.add(
                    f"components.{comp}",
                    f"unknown component {show(comp)}",
                    f"{fix} (components: {', '.join(COMPONENTS)})",
                )
                continue
            parsed = _component(chk, comp, figures, clock_hz)
            if parsed is not None:
                components[comp] = parsed
        missing = [c for c in COMPONENTS if c not in raw]
        if missing:
            chk.add(
                "components",
                f"missing {', '.join(missing)}: an accelerator is priced from every component",
                "give each one's figures (docs/targets.md lists them)",
            )
    chk.raise_if_any()
    canonical = json.dumps(
        {"clock_hz": clock_hz, "components": {k: asdict(v) for k, v in components.items()}},
        sort_keys=True,
    )
    return TechTable(
        name=name or "",
        description=description or "",
        source=source_text or "",
        clock_hz=clock_hz or 0.0,
        components={c: components[c] for c in COMPONENTS},
        path=source,
        digest=hashlib.sha256(canonical.encode()).hexdigest()[:16],
    )


def _component(chk: Checker, comp: str, figures: Any, clock_hz: float | None) -> Component | None:
    where = f"components.{comp}"
    data = chk.mapping(figures, where, what="a mapping of figure: value")
    if data is None:
        return None
    sizing = COMPONENTS[comp][1]
    if comp == "dram":
        allowed: tuple[str, ...] = ("energy_pj_per_byte", "source")
    else:
        allowed = ("area_um2", *_POWER_FIELDS, "leakage_mw", "source") + (
            (sizing,) if sizing else ()
        )
    before = len(chk.problems)
    chk.no_extra(data, allowed, where)
    source = chk.text(data, "source", where, default="") or ""
    if comp == "dram":
        energy = _number(chk, data, "energy_pj_per_byte", where, what="energy per byte moved")
        if len(chk.problems) > before or energy is None:
            return None
        return Component(name=comp, energy_pj_per_byte=energy, source=source)
    area = _number(chk, data, "area_um2", where, what="area of one unit")
    given = [k for k in _POWER_FIELDS if k in data]
    power = None
    if len(given) == 2:
        chk.add(
            f"{where}.energy_pj_per_cycle",
            "gives the power a second time (power_mw is set)",
            "keep one of power_mw and energy_pj_per_cycle",
        )
    elif given == ["energy_pj_per_cycle"]:
        energy = _number(chk, data, "energy_pj_per_cycle", where, what="")
        if energy is not None and clock_hz is not None:
            power = energy * clock_hz / 1e9
    else:
        power = _number(chk, data, "power_mw", where, what="dynamic power (or energy_pj_per_cycle)")
    leakage = _number(chk, data, "leakage_mw", where, what="", minimum=0.0, default=0.0)
    units = 0
    if sizing:
        fix = _SIZING_FIX[sizing]
        units = chk.integer(data, sizing, where, fix=fix) or 0
    if len(chk.problems) > before or area is None or power is None or leakage is None:
        return None
    return Component(
        name=comp,
        area_um2=area,
        power_mw=power,
        leakage_mw=leakage,
        pes=units if sizing == "pes" else 0,
        macro_bytes=units if sizing == "macro_bytes" else 0,
        source=source,
    )


def _number(
    chk: Checker,
    data: Mapping[str, Any],
    key: str,
    path: str,
    *,
    what: str,
    minimum: float | None = None,
    default: float | None = None,
) -> float | None:
    """A finite number > 0 (or >= ``minimum``); numeric text such as '1e3' (YAML 1.1 reads
    exponents without a dot as text) is accepted."""
    where = f"{path}.{key}" if path else key
    value = data.get(key)
    if value is None:
        if default is not None:
            return default
        chk.add(where, f"missing figure{f' ({what})' if what else ''}", f"set {key}")
        return None
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    bound = "positive" if minimum is None else f">= {minimum:g}"
    if number is None or not math.isfinite(number):
        chk.add(where, f"must be a {bound} number, got {show(value)}", f"set {key} to a number")
        return None
    if (minimum is None and number <= 0) or (minimum is not None and number < minimum):
        chk.add(where, f"must be {bound}, got {show(value)}", f"set {key} to a {bound} number")
        return None
    return number
