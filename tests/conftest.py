"""Shared fixtures: a tiny DLRM spec and graph every IR test can start from."""

from __future__ import annotations

import copy

import pytest

from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import load_spec

TINY_DLRM = {
    "version": 1,
    "kind": "model",
    "name": "tiny-dlrm",
    "arch": "dlrm",
    "dense_features": 8,
    "embedding": {
        "dim": 4,
        "tables": [
            {"rows": [10, 20, 1000], "pooling": 1, "name": "small"},
            {"rows": 500, "count": 2, "pooling": 3, "name": "multi"},
        ],
    },
    "bottom_mlp": [16, 4],
    "top_mlp": [8, 1],
    "interaction": "dot",
}


@pytest.fixture
def tiny_spec_dict() -> dict:
    return copy.deepcopy(TINY_DLRM)


@pytest.fixture
def tiny_graph():
    return lower(load_spec(copy.deepcopy(TINY_DLRM)), batch=16)
