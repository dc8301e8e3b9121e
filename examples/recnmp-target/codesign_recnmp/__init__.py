"""codesign-recnmp: a RecNMP-style near-memory embedding engine as a codesign target plugin.

codesign finds it through the ``codesign.targets`` entry point ``nmp/recnmp`` (see
pyproject.toml); ``codesign targets show nmp/recnmp`` lists its knobs.
"""

from __future__ import annotations

from codesign_recnmp.target import NAME, RecNMPTarget, recnmp_knobs

__all__ = ["NAME", "RecNMPTarget", "recnmp_knobs"]
__version__ = "0.1.0"
