"""The quality cache: each trained model's validation scores and labels (``.npz``) with JSON
metadata (dataset, spec hashes, seed, training settings, metrics), reused across runs.

Layout under the cache root (``--cache-dir``, else ``$CODESIGN_CACHE_DIR``, else
``.codesign-cache`` in the working directory)::

    quality/<dataset key>/dataset.json             what the dataset is (for people)
    quality/<dataset key>/<model>-<entry key>.npz  scores (float32), labels (uint8)
    quality/<dataset key>/<model>-<entry key>.json metadata, written last

The entry key hashes the dataset key, the zoo spec's hash and the training settings, so a change
to any of them trains anew. Every file is written to a temporary name in the same directory and
moved into place with ``os.replace`` (atomic on POSIX and Windows), and the JSON is written after
the ``.npz``: an interrupted run leaves either a complete entry or none. An entry whose files are
missing, unreadable or inconsistent is treated as absent (and rewritten by the next training).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codesign.quality.errors import QualityError

ENV_VAR = "CODESIGN_CACHE_DIR"
DEFAULT_DIR = ".codesign-cache"
FORMAT = "codesign.quality"
FORMAT_VERSION = 1
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$CODESIGN_CACHE_DIR``, else ``./.codesign-cache``."""
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_DIR


def entry_key(dataset_key: str, zoo_spec_hash: str, train: dict[str, Any]) -> str:
    payload = json.dumps(
        {"dataset": dataset_key, "spec": zoo_spec_hash, "train": train},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache entry: its metadata and where its arrays are."""

    meta: dict[str, Any]
    npz_path: Path
    json_path: Path

    @property
    def model(self) -> str:
        return self.meta["model"]

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32, labels float64) of the validation samples."""
        arrays = _read_npz(self.npz_path)
        if arrays is None:
            raise QualityError(
                f"cache entry {self.npz_path} cannot be read; delete it and train again"
            )
        return arrays


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            scores = np.asarray(data["scores"], dtype=np.float32)
            labels = np.asarray(data["labels"], dtype=np.float64)
    except (OSError, KeyError, ValueError, EOFError):
        return None
    if scores.ndim != 1 or scores.shape != labels.shape:
        return None
    return scores, labels


class QualityCache:
    """The quality cache under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = cache_root(root)
        self.dir = self.root / "quality"

    def _paths(self, dataset_key: str, model: str, key: str) -> tuple[Path, Path]:
        stem = f"{_SAFE.sub('_', model)[:80]}-{key}"
        base = self.dir / dataset_key
        return base / f"{stem}.npz", base / f"{stem}.json"

    def get(
        self, dataset_key: str, model: str, key: str, *, check: bool = False
    ) -> CacheEntry | None:
        """The complete entry, or None. ``check`` also opens the arrays."""
        npz, meta_path = self._paths(dataset_key, model, key)
        meta = _read_json(meta_path)
        if meta is None or meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        if meta.get("version") != FORMAT_VERSION or not npz.is_file():
            return None
        if npz.stat().st_size != meta.get("npz_bytes"):
            return None
        if check and _read_npz(npz) is None:
            return None
        return CacheEntry(meta, npz, meta_path)

    def put(
        self,
        dataset_key: str,
        model: str,
        key: str,
        *,
        scores: np.ndarray,
        labels: np.ndarray,
        meta: dict[str, Any],
        dataset: dict[str, Any] | None = None,
    ) -> CacheEntry:
        """Write an entry atomically (arrays first, metadata last)."""
        npz, meta_path = self._paths(dataset_key, model, key)
        try:
            npz.parent.mkdir(parents=True, exist_ok=True)
            if dataset is not None:
                info = npz.parent / "dataset.json"
                if not info.exists():
                    _atomic_write(info, (json.dumps(dataset, indent=2) + "\n").encode())
            with _atomic(npz) as fh:
                np.savez(
                    fh,
                    scores=np.asarray(scores, dtype=np.float32),
                    labels=np.asarray(labels).astype(np.uint8),
                )
            full = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "key": key,
                "npz": npz.name,
                "npz_bytes": npz.stat().st_size,
                **meta,
            }
            _atomic_write(meta_path, (json.dumps(full, indent=2) + "\n").encode())
        except OSError as exc:
            raise QualityError(
                f"cannot write the quality cache under {self.dir} ({exc.__class__.__name__}: "
                f"{exc.strerror or exc}); pass a writable --cache-dir"
            ) from None
        return CacheEntry(full, npz, meta_path)

    def entries(self, dataset_key: str | None = None) -> list[CacheEntry]:
        """Every complete entry (of one dataset), sorted by path."""
        out = []
        dirs = [self.dir / dataset_key] if dataset_key else sorted(self._dataset_dirs())
        for base in dirs:
            for meta_path in sorted(base.glob("*.json")):
                if meta_path.name == "dataset.json":
                    continue
                meta = _read_json(meta_path)
                if meta is None or meta.get("format") != FORMAT:
                    continue
                entry = self.get(base.name, meta.get("model", ""), meta.get("key", ""))
                if entry is not None:
                    out.append(entry)
        return out

    def _dataset_dirs(self) -> Iterator[Path]:
        if self.dir.is_dir():
            yield from (p for p in self.dir.iterdir() if p.is_dir())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    """A binary file handle whose content replaces ``path`` only if the block completes."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; cache files are ordinary files
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_write(path: Path, data: bytes) -> None:
    with _atomic(path) as fh:
        fh.write(data)
