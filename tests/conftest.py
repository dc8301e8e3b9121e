"""Shared fixtures: a tiny DLRM spec and graph every IR test can start from."""

from __future__ import annotations

import copy

import pytest

from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import load_spec
from codesign.testing.target_contract import TINY_DLRM as CONTRACT_TINY_DLRM

TINY_DLRM = copy.deepcopy(CONTRACT_TINY_DLRM)


@pytest.fixture
def tiny_spec_dict() -> dict:
    return copy.deepcopy(TINY_DLRM)


@pytest.fixture
def tiny_graph():
    return lower(load_spec(copy.deepcopy(TINY_DLRM)), batch=16)
