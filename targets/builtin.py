"""Factories the built-in entry points name (``codesign.targets`` group in pyproject.toml)."""

from __future__ import annotations

from typing import Any

from codesign.targets.presets import builtin


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
