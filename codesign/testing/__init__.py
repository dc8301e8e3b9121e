"""Test helpers shipped with codesign, for its own tests and for plugin authors.

- :mod:`codesign.testing.target_contract`: ``TargetContract``, the pytest suite every target
  (built-in or plugin) must pass. Subclass it in a test module and implement ``make_target()``.
- :mod:`codesign.testing.scalesim`: run SCALE-Sim 3.0.0 on one GEMM (reference numbers).

Nothing here imports pytest unless you import the contract module itself.
"""

from __future__ import annotations

import sys

if "pytest" in sys.modules:  # running under pytest: rewrite the contract's asserts for clear diffs
    import pytest

    pytest.register_assert_rewrite("codesign.testing.target_contract")
