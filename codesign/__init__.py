"""codesign: hardware/software co-design optimizer for deep recommendation inference."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("codesign")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
