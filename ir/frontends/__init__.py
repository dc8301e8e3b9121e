"""Frontends into the IR: model specs (spec.py), the zoo (zoo.py), lowering (lower.py), and
import of PyTorch modules (torch_import.py, the only module here that imports torch, lazily) and
ONNX files (onnx_import.py, the only one that imports onnx, lazily), which share their layer
patterns (patterns.py)."""
