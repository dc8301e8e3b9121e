"""Factories the built-in entry points name (``codesign.targets`` group in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codesign.targets.presets import Preset, preset_dir, read_preset


def cpu_host() -> Any:
    return builtin("cpu-host")


def cpu_cascadelake() -> Any:
    return builtin("cpu-cascadelake")


def gpu_t4() -> Any:
    return builtin("gpu-t4")


def gpu_v100() -> Any:
    return builtin("gpu-v100")


def gpu_h100() -> Any:
    return builtin("gpu-h100")


def accel_rpaccel() -> Any:
    return builtin("accel-rpaccel")


def accel_tpu_like() -> Any:
    return builtin("accel-tpu-like")


def accel_hardconf_1() -> Any:
    return builtin("accel-hardconf-1")


def accel_hardconf_4() -> Any:
    return builtin("accel-hardconf-4")


def accel_hardconf_16() -> Any:
    return builtin("accel-hardconf-16")


def accel_hardconf_64() -> Any:
    return builtin("accel-hardconf-64")


def build(preset: Preset) -> Any:
    """A target instance of the preset's type, its knob defaults validated."""
    if preset.type == "cpu":
        from codesign.targets.cpu import CPUTarget as cls
    elif preset.type == "gpu":
        from codesign.targets.gpu import GPUTarget as cls
    else:
        from codesign.targets.accel import AccelTarget as cls
    return cls(preset)


def builtin(stem: str) -> Any:
    return build(read_preset(preset_dir() / f"{stem}.yaml"))


def target_from_file(path: Path) -> Any:
    return build(read_preset(path))


def resolve_preset(path: Path) -> dict[str, Any]:
    """A preset file loaded and checked (every problem in one :class:`SpecError`): its name,
    type and each knob's resolved value with where it comes from: ``preset`` (set in the
    file), ``detected`` (the host's figures under ``detect: true``) or ``type default``."""
    preset = read_preset(path)
    target = build(preset)
    knobs = []
    for knob in target.design_space().knobs:
        if knob.name in preset.knobs:
            origin = "preset"
        elif knob.name in target.preset_values:
            origin = "detected"
        else:
            origin = "type default"
        knobs.append({"name": knob.name, "value": knob.default, "unit": knob.unit, "from": origin})
    info: dict[str, Any] = {
        "kind": "target",
        "path": str(path),
        "name": preset.name,
        "type": preset.type,
        "knobs": knobs,
    }
    tech = getattr(target, "tech", None)
    if tech is not None:
        info["tech"] = {
            "name": tech.name,
            "path": tech.path,
            "from": "preset" if preset.tech else "default",
        }
    return info


def validate_file(path: Path) -> dict[str, Any]:
    """A target preset (:func:`resolve_preset`) or a technology table (``kind: tech``) checked
    as a whole; every problem is one :class:`SpecError` naming the file."""
    from codesign.ir.frontends.spec import read_yaml
    from codesign.targets.technology import is_tech_document, parse_tech

    data = read_yaml(path, what="target preset or technology table")
    if is_tech_document(data):
        return {"kind": "tech", **parse_tech(data, source=str(path)).as_dict()}
    return resolve_preset(path)
