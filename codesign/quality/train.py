"""PyTorch models built from model specs, trained on CPU, and scored on the validation split.

This is the only module of :mod:`codesign.quality` that imports torch, and only inside functions,
so importing the package (or the CLI) stays light.

The modules mirror :func:`codesign.ir.lower` node for node: a DLRM is a bottom MLP (ReLU after
every layer), one sum ``EmbeddingBag`` per table, the interaction (dot: the strict lower triangle
of the Gram matrix of ``[x, *embeddings]`` after ``x``; cat: ``[x, *embeddings]``) and a top MLP
whose last layer carries the spec's output activation; NeuMF is a GMF product of two embeddings
and an MLP tower over two more, joined by a final layer. ``torch_import.import_module`` of a
built module therefore gives the same IR (ops, shapes, MACs) as ``lower`` of its spec, which the
tests check: the model that is costed is the model that is scored.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codesign.ir.frontends.spec import ModelSpec
from codesign.quality.errors import QualityError

if TYPE_CHECKING:
    import torch

    from codesign.quality.datasets import Dataset

#: Output activations the trainer understands (the loss is BCE on the pre-activation logit).
TRAINABLE_OUTPUTS = ("sigmoid", "none")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Training hyper-parameters; every field enters the cache key."""

    epochs: int = 1
    batch_size: int = 1024
    #: Adam's learning rate for the dense (MLP) weights.
    lr: float = 2e-3
    #: Adagrad's learning rate for the embedding tables (DLRM practice: Adagrad or SGD there).
    embedding_lr: float = 0.3
    seed: int = 0
    score_batch_size: int = 16_384

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.score_batch_size < 1:
            raise QualityError("epochs, batch_size and score_batch_size must be >= 1")
        if not (self.lr > 0 and self.embedding_lr > 0):
            raise QualityError(f"learning rates must be > 0, got {self.lr}, {self.embedding_lr}")


@dataclass(frozen=True)
class Trained:
    """A trained model's validation scores and training statistics."""

    scores: np.ndarray
    train_time_s: float
    final_loss: float
    params: int
    torch_version: str
    #: torch's intra-op threads while training (see :func:`training_threads`)
    threads: int = 0


#: ``progress(steps_done_now, running_loss)``; may raise KeyboardInterrupt to stop.
Progress = Callable[[int, float], None]


def check_trainable(spec: ModelSpec) -> None:
    """Raise :class:`QualityError` unless :func:`build_module` can build ``spec``."""
    if spec.arch not in ("dlrm", "neumf"):
        raise QualityError(
            f"model {spec.name!r} is a {spec.arch} spec; quality training supports the dlrm and "
            "neumf families (rm-*, neumf-*, your own dlrm/neumf specs)"
        )
    act = spec.config["output_activation"]
    if act not in TRAINABLE_OUTPUTS:
        raise QualityError(
            f"model {spec.name!r} ends in {act}; training needs output_activation sigmoid or none"
        )
    if spec.dtype != "fp32" or spec.config.get("embedding", {}).get("dtype", "fp32") != "fp32":
        raise QualityError(f"model {spec.name!r} is not fp32; train the fp32 spec")


def steps_per_epoch(n: int, config: TrainConfig) -> int:
    return math.ceil(n / config.batch_size)


#: Output activations :func:`build_module` builds when it is not building to train.
OUTPUTS = {"sigmoid": "sigmoid", "none": None, "relu": "relu"}


def build_module(spec: ModelSpec, *, train: bool = True) -> torch.nn.Module:
    """The PyTorch module of a dlrm or neumf ``spec`` (see the module docstring). ``train``:
    only specs training supports (:func:`check_trainable`); otherwise (exporting the zoo's
    module, e.g. to ONNX) any dlrm or neumf spec with an output activation in ``OUTPUTS``."""
    if train or spec.arch not in ("dlrm", "neumf"):
        check_trainable(spec)
    elif spec.config["output_activation"] not in OUTPUTS:
        raise QualityError(
            f"model {spec.name!r} ends in {spec.config['output_activation']}; a module can be "
            f"built with output_activation {', '.join(OUTPUTS)}"
        )
    import torch
    from torch import nn

    def mlp(sizes: list[int]) -> nn.Sequential:
        """Linear+ReLU for every layer (the lowering's hidden-layer activation)."""
        layers: list[nn.Module] = []
        for fin, fout in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fin, fout), nn.ReLU()]
        return nn.Sequential(*layers)

    def head(sizes: list[int]) -> tuple[nn.Sequential, nn.Linear]:
        """Hidden layers with ReLU, then the last Linear (its activation applied by forward)."""
        return mlp(sizes[:-1]), nn.Linear(sizes[-2], sizes[-1])

    cfg = spec.config
    final = OUTPUTS[cfg["output_activation"]]

    def activate(out: torch.Tensor) -> torch.Tensor:
        if final == "sigmoid":
            return torch.sigmoid(out)
        return torch.relu(out) if final == "relu" else out

    class DLRM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            emb = cfg["embedding"]
            dim, tables = emb["dim"], emb["tables"]
            self.pooling = [t["pooling"] for t in tables]
            self.bottom = mlp([cfg["dense_features"], *cfg["bottom_mlp"]])
            self.tables = nn.ModuleList(nn.EmbeddingBag(t["rows"], dim, mode="sum") for t in tables)
            for t, table in zip(tables, self.tables, strict=True):
                bound = math.sqrt(1.0 / t["rows"])
                nn.init.uniform_(table.weight, -bound, bound)
            n = len(tables) + 1
            self.dot = cfg["interaction"] == "dot"
            if self.dot:
                offset = 0 if cfg["self_interaction"] else -1
                self.register_buffer("tri", torch.tril_indices(n, n, offset=offset))
                width = cfg["bottom_mlp"][-1] + self.tri.shape[1]
            else:
                width = cfg["bottom_mlp"][-1] + dim * len(tables)
            self.top, self.last = head([width, *cfg["top_mlp"]])

        def logits(self, dense: torch.Tensor, *ids: torch.Tensor) -> torch.Tensor:
            x = self.bottom(dense)
            embs = [table(i) for table, i in zip(self.tables, ids, strict=True)]
            if self.dot:
                t = torch.stack([x, *embs], dim=1)
                z = torch.bmm(t, t.transpose(1, 2))
                inter = torch.cat([x, z[:, self.tri[0], self.tri[1]]], dim=1)
            else:
                inter = torch.cat([x, *embs], dim=1)
            return self.last(self.top(inter))

        def forward(self, dense: torch.Tensor, *ids: torch.Tensor) -> torch.Tensor:
            out = self.logits(dense, *ids)
            return activate(out)

    class NeuMF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            users, items, mf_dim = cfg["users"], cfg["items"], cfg["mf_dim"]
            self.gmf = cfg["gmf"] if mf_dim else None
            if mf_dim:
                self.mf_user = nn.Embedding(users, mf_dim)
                self.mf_item = nn.Embedding(items, mf_dim)
            layers = cfg["mlp_layers"]
            self.mlp_user = nn.Embedding(users, cfg["mlp_embedding_dim"])
            self.mlp_item = nn.Embedding(items, cfg["mlp_embedding_dim"])
            for table in self.modules():
                if isinstance(table, nn.Embedding):
                    nn.init.normal_(table.weight, std=0.01)
            self.tower = mlp(list(layers))
            self.final_hidden, self.last = head([(mf_dim or 0) + layers[-1], *cfg["final"]])

        def logits(self, dense: torch.Tensor, user: torch.Tensor, item: torch.Tensor):
            branches = []
            if self.gmf is not None:
                u, i = self.mf_user(user), self.mf_item(item)
                branches.append(u * i if self.gmf == "mul" else u + i)
            tower = self.tower(torch.cat([self.mlp_user(user), self.mlp_item(item)], dim=1))
            branches.append(tower)
            return self.last(self.final_hidden(torch.cat(branches, dim=1)))

        def forward(self, dense: torch.Tensor, user: torch.Tensor, item: torch.Tensor):
            out = self.logits(dense, user, item)
            return activate(out)

    return DLRM() if spec.arch == "dlrm" else NeuMF()


def example_inputs(spec: ModelSpec, batch: int, *, seed: int = 0) -> tuple:
    """Forward arguments of :func:`build_module`'s module for a batch (for ``torch.export``)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    cfg = spec.config
    if spec.arch == "dlrm":
        dense = torch.randn(batch, cfg["dense_features"], generator=gen)
        ids = tuple(
            torch.randint(0, t["rows"], (batch, t["pooling"]), generator=gen)
            for t in cfg["embedding"]["tables"]
        )
        return (dense, *ids)
    dense = torch.zeros(batch, 0)
    return (
        dense,
        torch.randint(0, cfg["users"], (batch,), generator=gen),
        torch.randint(0, cfg["items"], (batch,), generator=gen),
    )


def _tensors(spec: ModelSpec, dense: np.ndarray, sparse: np.ndarray) -> tuple:
    """Forward arguments for rows of a split (ids are (n, pooling) for DLRM, (n,) for NeuMF)."""
    import torch

    d = torch.from_numpy(dense)
    if spec.arch == "dlrm":
        return (d, *(torch.from_numpy(sparse[:, t : t + 1]) for t in range(sparse.shape[1])))
    return (d, torch.from_numpy(sparse[:, 0]), torch.from_numpy(sparse[:, 1]))


def training_threads() -> int:
    """torch's intra-op threads for training: its default (one per core), fewer when other
    processes keep the cores busy now (the cores this process may use minus the other
    runnable processes, :func:`busy_elsewhere`, rounded, at least 1).

    On a busy machine torch's OpenMP threads spin while they wait for each other and for the
    cores the other processes hold: measured here on 2 cores at a load of 5-6, training rm-med
    on 150,000 samples took 32-67 s wall (21-29 CPU-s) with 2 threads and 2.9-7.8 s with 1."""
    import torch

    default = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return default
    busy = busy_elsewhere()
    if busy is None:
        return default
    return max(1, min(default, math.floor(cores - busy + 0.5)))


def busy_elsewhere(samples: int = 5, interval_s: float = 0.01) -> float | None:
    """Processes runnable right now besides this one: the running count of ``/proc/loadavg``
    (which counts this process) minus one, averaged over ``samples`` reads ``interval_s``
    apart; else the 1-minute load average (which lags: a minute after a ``pip install`` it
    still counts it, and it counts this process's own work); ``None`` when neither is there."""
    counts = []
    for i in range(samples):
        try:
            text = Path("/proc/loadavg").read_text().split()
            counts.append(max(0, int(text[3].split("/")[0]) - 1))
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(interval_s)
    if counts:
        return sum(counts) / len(counts)
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (``None``: as they are), then restore."""
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_and_score(
    spec: ModelSpec,
    dataset: Dataset,
    config: TrainConfig,
    *,
    progress: Progress | None = None,
    threads: int | None = None,
) -> Trained:
    """Train ``spec`` (already sized to the dataset) on the training split, then score the
    validation split, on ``threads`` intra-op threads (``None``: torch's setting). Deterministic
    for a given seed on one machine and thread count."""
    with torch_threads(threads):
        return _train_and_score(spec, dataset, config, progress=progress)


def _train_and_score(
    spec: ModelSpec, dataset: Dataset, config: TrainConfig, *, progress: Progress | None
) -> Trained:
    import torch

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model = build_module(spec)
    params = sum(p.numel() for p in model.parameters())
    optims = _optimizers(model, config)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    train = dataset.train
    n = len(train)
    rng = np.random.default_rng([config.seed, 17])
    running = float("nan")
    model.train()
    for _epoch in range(config.epochs):
        order = rng.permutation(n)
        for s in range(0, n, config.batch_size):
            idx = np.sort(order[s : s + config.batch_size])
            value = _step(model, optims, loss_fn, spec, train, idx)
            running = value if math.isnan(running) else 0.98 * running + 0.02 * value
            if progress is not None:
                progress(1, running)
    scores = score(model, spec, dataset, batch_size=config.score_batch_size)
    return Trained(
        scores=scores,
        train_time_s=time.perf_counter() - start,
        final_loss=running,
        params=params,
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
    )


def _optimizers(model: Any, config: TrainConfig) -> list:
    import torch

    emb_params, dense_params = _param_groups(model)
    return [
        torch.optim.Adagrad(emb_params, lr=config.embedding_lr),
        torch.optim.Adam(dense_params, lr=config.lr),
    ]


def _step(model: Any, optims: list, loss_fn: Any, spec: ModelSpec, train: Any, idx: Any) -> float:
    """One training step on the rows ``idx`` of the split ``train``; returns the batch loss."""
    import torch

    args = _tensors(spec, train.dense[idx], train.sparse[idx])
    target = torch.from_numpy(train.labels[idx])
    for optim in optims:
        optim.zero_grad(set_to_none=True)
    loss = loss_fn(model.logits(*args).squeeze(1), target)
    loss.backward()
    for optim in optims:
        optim.step()
    return float(loss.detach())


@dataclass(frozen=True)
class StepTiming:
    """Seconds of one training step (the mean of ``steps`` timed ones) and of one scoring
    batch, timed on this machine now."""

    step_s: float
    score_batch_s: float
    steps: int

    def estimate_s(self, *, steps: int, score_batches: int) -> float:
        return self.step_s * steps + self.score_batch_s * score_batches


def time_steps(
    spec: ModelSpec,
    dataset: Dataset,
    config: TrainConfig,
    *,
    warmup_steps: int = 2,
    min_steps: int = 4,
    max_steps: int = 40,
    budget_s: float = 0.5,
    threads: int | None = None,
) -> StepTiming:
    """Time training steps and one scoring batch of a throwaway copy of ``spec``, for an
    estimate of :func:`train_and_score`'s time before it runs: ``warmup_steps`` untimed steps
    first (the first step of a process pays one-off set-up, seconds on a busy machine), then
    at least ``min_steps`` and, while under ``budget_s``, up to ``max_steps`` timed ones (a
    longer window than a handful of steps, so that one stall of a busy machine does not
    dominate). Uses the first batches of the training split in order; the real training
    reseeds torch, so this does not change its result. ``threads`` as for
    :func:`train_and_score`."""
    with torch_threads(threads):
        return _time_steps(spec, dataset, config, warmup_steps, min_steps, max_steps, budget_s)


def _time_steps(
    spec: ModelSpec,
    dataset: Dataset,
    config: TrainConfig,
    warmup_steps: int,
    min_steps: int,
    max_steps: int,
    budget_s: float,
) -> StepTiming:
    import torch

    model = build_module(spec)
    optims = _optimizers(model, config)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n = len(dataset.train)
    model.train()

    def rows(i: int) -> np.ndarray:
        start = (i * config.batch_size) % max(1, n)
        return np.arange(start, min(n, start + config.batch_size))

    for i in range(warmup_steps):
        _step(model, optims, loss_fn, spec, dataset.train, rows(i))
    start = time.perf_counter()
    timed = 0
    while timed < min_steps or (timed < max_steps and time.perf_counter() - start < budget_s):
        _step(model, optims, loss_fn, spec, dataset.train, rows(warmup_steps + timed))
        timed += 1
    step_s = (time.perf_counter() - start) / max(1, timed)
    val = dataset.validation
    width = min(config.score_batch_size, len(val))
    model.eval()
    with torch.inference_mode():
        args = _tensors(spec, val.dense[:width], val.sparse[:width])
        model.logits(*args)  # warm-up
        start = time.perf_counter()
        model.logits(*args)
        score_s = time.perf_counter() - start
    return StepTiming(step_s=step_s, score_batch_s=score_s, steps=timed)


def score_batches(n: int, config: TrainConfig) -> int:
    return math.ceil(n / config.score_batch_size)


def _param_groups(model: Any) -> tuple[list, list]:
    """(embedding tables, everything else)."""
    import torch

    tables = (torch.nn.Embedding, torch.nn.EmbeddingBag)
    emb = [p for m in model.modules() if isinstance(m, tables) for p in m.parameters()]
    ids = {id(p) for p in emb}
    return emb, [p for p in model.parameters() if id(p) not in ids]


def score(model: Any, spec: ModelSpec, dataset: Dataset, *, batch_size: int) -> np.ndarray:
    """Click probabilities of the validation split (float32)."""
    import torch

    val = dataset.validation
    out = np.empty(len(val), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(val), batch_size):
            args = _tensors(spec, val.dense[s : s + batch_size], val.sparse[s : s + batch_size])
            logits = model.logits(*args).squeeze(1)
            out[s : s + batch_size] = torch.sigmoid(logits).numpy()
    return out
