"""Frontends into the IR: model specs (spec.py), the zoo (zoo.py), lowering (lower.py) and
PyTorch import (torch_import.py, the only module here that imports torch, lazily)."""
